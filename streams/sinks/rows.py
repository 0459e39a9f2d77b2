"""Messages to ClickHouse rows: one row type per table, pure functions, no I/O.

The field order of each row type is the column order of its INSERT, so a row
tuple goes to clickhouse-connect unchanged. Values are checked here against
the column types (integer widths, finite floats, encodable text) so that a
message that cannot be stored fails alone, at ``add`` time, with its id,
instead of failing a whole batch later.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, TypeAlias

from schemas import Alert, DeadLetter, FrameDetections
from schemas.camera_health import CameraHealth
from schemas.hard_examples import HardExample
from schemas.model_agreement import ModelAgreement
from schemas.model_alerts import ModelAlert
from schemas.reviews import AlertReview
from schemas.tracks import FrameTracks
from streams.sinks.camera_health_rows import CameraHealthRow, camera_health_row
from streams.sinks.model_rows import (
    AlertReviewRow,
    ModelAgreementRow,
    ModelAlertRow,
    alert_review_row,
    model_agreement_row,
    model_alert_row,
    review_version,
)
from streams.sinks.shared_rows import copy_row
from streams.sinks.track_rows import (
    CrossingRow,
    OccupancyRow,
    TrackPointRow,
    ZoneVisitRow,
    crossing_rows,
    occupancy_rows,
    track_point_rows,
    tracks_message_id,
    zone_visit_rows,
)

ORIGINAL_HEAD_BYTES = 4096

UINT16 = (0, 2**16 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class ClassificationRow(NamedTuple):
    event_id: str
    camera_id: str
    frame_seq: int
    captured_at: datetime
    label: str
    class_id: int
    score: float
    model_name: str
    model_version: str


class FrameRow(NamedTuple):
    event_id: str
    camera_id: str
    frame_seq: int
    captured_at: datetime
    detected_at: datetime
    width: int
    height: int
    model_name: str
    model_version: str
    object_count: int
    brightness: float | None
    sharpness: float | None
    contrast: float | None
    ingest_ms: float | None
    queue_ms: float | None
    batch_wait_ms: float | None
    triton_ms: float | None


class DetectionRow(NamedTuple):
    detection_id: str
    event_id: str
    camera_id: str
    frame_seq: int
    object_index: int
    captured_at: datetime
    class_id: int
    class_name: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float
    model_name: str
    model_version: str


class AlertRow(NamedTuple):
    alert_id: str
    rule_id: str
    severity: str
    camera_id: str
    frame_seq: int
    event_id: str
    captured_at: datetime
    raised_at: datetime
    class_name: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float
    zone: str | None
    object_count: int
    message: str
    snapshot_url: str | None  # migration 0007


class DeadLetterRow(NamedTuple):
    dead_letter_id: str
    stage: str
    error_type: str
    reason: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    record_key: bytes | None
    headers: dict[str, str]
    original_size: int
    original_sha256: str
    original_head: bytes
    failed_at: datetime


class HardExampleRow(NamedTuple):
    example_id: str
    camera_id: str
    frame_seq: int
    event_id: str
    reason: str
    detail: str
    captured_at: datetime
    sampled_at: datetime
    image_uri: str | None
    predictions_uri: str
    width: int
    height: int
    model_name: str
    model_version: str
    prediction_count: int
    predictions: str
    review_id: str | None


Row: TypeAlias = (
    FrameRow | DetectionRow | AlertRow | DeadLetterRow | HardExampleRow
    | TrackPointRow | CrossingRow | ZoneVisitRow | OccupancyRow | ModelAlertRow | AlertReviewRow
    | CameraHealthRow | ModelAgreementRow
)  # fmt: skip
Persistable: TypeAlias = (
    FrameDetections | Alert | DeadLetter | HardExample | FrameTracks | ModelAlert | AlertReview | CameraHealth
    | ModelAgreement
)  # fmt: skip


IntBounds: TypeAlias = tuple[tuple[str, tuple[int, int]], ...]


@dataclass(frozen=True)
class Table:
    """A target table: its row type (= its insert columns), the id it deduplicates on, its time
    column, the sorting-key columns before the id (they narrow the lookup of stored ids), the
    ranges of its integer columns, and whether the time is the same in a re-processed message
    (only then may the lookup of stored ids narrow by time). The defaults are those of most
    tables: one camera's rows by capture time."""

    name: str
    row_type: type[Row]
    id_column: str
    time_column: str = "captured_at"
    lookup_columns: tuple[str, ...] = ("camera_id",)
    int_bounds: IntBounds = ()
    time_is_deterministic: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        return self.row_type._fields

    def row_id(self, row: Row) -> str:
        return getattr(row, self.id_column)


def _in_range(bounds: tuple[int, int], *columns: str) -> IntBounds:
    return tuple((column, bounds) for column in columns)


_FRAME_SEQ = ("frame_seq", UINT64)

FRAMES = Table(
    "frames", FrameRow, "event_id", int_bounds=(_FRAME_SEQ, *_in_range(UINT32, "width", "height", "object_count"))
)
DETECTIONS = Table(
    "detections", DetectionRow, "detection_id", int_bounds=(_FRAME_SEQ, *_in_range(UINT16, "object_index", "class_id"))
)
ALERTS = Table("alerts", AlertRow, "alert_id", int_bounds=(_FRAME_SEQ, ("object_count", UINT32)))
DEAD_LETTERS = Table(
    "dead_letters",
    DeadLetterRow,
    "dead_letter_id",
    "failed_at",
    ("stage", "source_topic"),
    (("source_partition", INT32), ("source_offset", INT64), ("original_size", UINT32)),
    time_is_deterministic=False,  # a record rejected again after a restart fails at a new time
)
HARD_EXAMPLES = Table(
    "hard_examples",
    HardExampleRow,
    "example_id",
    int_bounds=(_FRAME_SEQ, *_in_range(UINT32, "width", "height", "prediction_count")),
)
# Track stage (migration 0005): a FrameTracks message writes these four.
TRACK_POINTS = Table("track_points", TrackPointRow, "point_id", int_bounds=(_FRAME_SEQ,))
LINE_CROSSINGS = Table("line_crossings", CrossingRow, "crossing_id", int_bounds=(_FRAME_SEQ,))
ZONE_VISITS = Table("zone_visits", ZoneVisitRow, "visit_id", int_bounds=(_FRAME_SEQ, ("entered_seq", UINT64)))
ZONE_OCCUPANCY = Table("zone_occupancy", OccupancyRow, "occupancy_id", int_bounds=(_FRAME_SEQ, ("objects", UINT32)))
# Monitor stage and alert reviews (migration 0003).
MODEL_ALERTS = Table(
    "model_alerts",
    ModelAlertRow,
    "model_alert_id",
    int_bounds=_in_range(UINT32, "reference_frames", "window_frames", "reference_samples", "window_samples")
    + _in_range(UINT64, "reference_first_seq", "reference_last_seq", "window_first_seq", "frame_seq"),
)
ALERT_REVIEWS = Table("alert_reviews", AlertReviewRow, "review_version", "reviewed_at")
# Camera health from ingest (migration 0006).
CAMERA_HEALTH = Table(
    "camera_health",
    CameraHealthRow,
    "health_id",
    "reported_at",
    int_bounds=_in_range(UINT32, "report_seq", "frames", "decode_errors", "reconnects")
    + _in_range(UINT64, "frames_total", "decode_errors_total", "reconnects_total"),
)
# Classifier verdicts of frames (migration 0008).
CLASSIFICATIONS = Table("classifications", ClassificationRow, "event_id", int_bounds=(_FRAME_SEQ, ("class_id", UINT16)))
# Shadow mode: a candidate detector vs the served one (migration 0009).
MODEL_AGREEMENT = Table(
    "model_agreement",
    ModelAgreementRow,
    "agreement_id",
    int_bounds=(_FRAME_SEQ, *_in_range(UINT32, "current_objects", "candidate_objects", "matched")),
)
TABLES: tuple[Table, ...] = (
    FRAMES,
    DETECTIONS,
    ALERTS,
    DEAD_LETTERS,
    HARD_EXAMPLES,
    TRACK_POINTS,
    LINE_CROSSINGS,
    ZONE_VISITS,
    ZONE_OCCUPANCY,
    MODEL_ALERTS,
    ALERT_REVIEWS,
    CAMERA_HEALTH,
    CLASSIFICATIONS,
    MODEL_AGREEMENT,
)


class RowConversionError(ValueError):
    """A message whose values cannot be stored. ``message_id`` names it so the caller can dead-letter it."""

    def __init__(self, message_id: str, problem: str) -> None:
        self.message_id = message_id
        self.problem = problem
        super().__init__(f"{message_id}: {problem}")


@dataclass(frozen=True)
class TableRows:
    table: Table
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class MessageRows:
    """Everything one message writes: its id and its rows per table."""

    message_id: str
    parts: tuple[TableRows, ...]


def message_id(message: Persistable) -> str:
    """The deterministic id a message is known by (in errors, logs and dead letters)."""
    if isinstance(message, FrameDetections):
        return message.event_id
    if isinstance(message, Alert):
        return message.alert_id
    if isinstance(message, HardExample):
        return message.example_id
    if isinstance(message, FrameTracks):
        return tracks_message_id(message)
    if isinstance(message, ModelAlert):
        return message.model_alert_id
    if isinstance(message, AlertReview):
        return review_version(message)
    if isinstance(message, CameraHealth):
        return message.health_id
    if isinstance(message, ModelAgreement):
        return message.agreement_id
    return dead_letter_id(message)


def dead_letter_id(letter: DeadLetter) -> str:
    """Same source record and stage, same id: a re-processed bad record is stored once."""
    if letter.source_partition is not None and letter.source_offset is not None:
        basis = f"{letter.stage}|{letter.source_topic}|{letter.source_partition}|{letter.source_offset}".encode()
    else:
        parts = (letter.stage.encode(), letter.source_topic.encode(), letter.key or b"", letter.original)
        basis = b"|".join(hashlib.sha256(part).digest() for part in parts)
    return hashlib.sha256(basis).hexdigest()[:32]


def frame_row(message: FrameDetections) -> FrameRow:
    stats = message.stats  # absent from some producers: its columns are then NULL
    return copy_row(
        FrameRow,
        message,
        message.timings,
        object_count=len(message.detections),
        brightness=stats.brightness if stats else None,
        sharpness=stats.sharpness if stats else None,
        contrast=stats.contrast if stats else None,
    )


def classification_rows(message: FrameDetections) -> tuple[ClassificationRow, ...]:
    verdict = message.classification
    if verdict is None:
        return ()
    # The classifier's model, not the detector's (the message has its own model_name/version).
    model = {"model_name": verdict.model_name, "model_version": verdict.model_version}
    return (copy_row(ClassificationRow, verdict, message, **model),)


def detection_rows(message: FrameDetections) -> tuple[DetectionRow, ...]:
    return tuple(
        copy_row(DetectionRow, detection, detection.box, message, object_index=index)
        for index, detection in enumerate(message.detections)
    )


def alert_row(alert: Alert) -> AlertRow:
    return copy_row(AlertRow, alert, alert.box, severity=alert.severity.value)


def dead_letter_row(letter: DeadLetter) -> DeadLetterRow:
    return copy_row(
        DeadLetterRow,
        letter,
        dead_letter_id=dead_letter_id(letter),
        record_key=letter.key,
        headers=dict(letter.headers),
        original_size=len(letter.original),
        original_sha256=hashlib.sha256(letter.original).hexdigest(),
        original_head=letter.original[:ORIGINAL_HEAD_BYTES],
    )


def hard_example_row(example: HardExample) -> HardExampleRow:
    predictions = json.dumps([detection.model_dump(mode="json") for detection in example.predictions])
    return copy_row(
        HardExampleRow,
        example,
        reason=example.reason.value,
        prediction_count=len(example.predictions),
        predictions=predictions,
    )


def _one_row(table: Table, row: Row) -> tuple[TableRows, ...]:
    return (TableRows(table, (row,)),)


def rows_for(message: Persistable) -> MessageRows:
    """All rows of one message, checked against the column types; raises ``RowConversionError``."""
    if isinstance(message, FrameDetections):
        parts = (TableRows(FRAMES, (frame_row(message),)), TableRows(DETECTIONS, detection_rows(message)))
        if message.classification is not None:
            parts += (TableRows(CLASSIFICATIONS, classification_rows(message)),)
    elif isinstance(message, Alert):
        parts = _one_row(ALERTS, alert_row(message))
    elif isinstance(message, DeadLetter):
        parts = _one_row(DEAD_LETTERS, dead_letter_row(message))
    elif isinstance(message, HardExample):
        parts = _one_row(HARD_EXAMPLES, hard_example_row(message))
    elif isinstance(message, FrameTracks):
        parts = (
            TableRows(TRACK_POINTS, track_point_rows(message)),
            TableRows(LINE_CROSSINGS, crossing_rows(message)),
            TableRows(ZONE_VISITS, zone_visit_rows(message)),
            TableRows(ZONE_OCCUPANCY, occupancy_rows(message)),
        )
    elif isinstance(message, ModelAlert):
        parts = _one_row(MODEL_ALERTS, model_alert_row(message))
    elif isinstance(message, AlertReview):
        parts = _one_row(ALERT_REVIEWS, alert_review_row(message))
    elif isinstance(message, CameraHealth):
        parts = _one_row(CAMERA_HEALTH, camera_health_row(message))
    elif isinstance(message, ModelAgreement):
        parts = _one_row(MODEL_AGREEMENT, model_agreement_row(message))
    else:
        raise TypeError(
            f"cannot persist a {type(message).__name__}; expected FrameDetections, Alert, DeadLetter, HardExample "
            "FrameTracks, ModelAlert, AlertReview, CameraHealth or ModelAgreement"
        )
    identifier = message_id(message)
    for part in parts:
        for row in part.rows:
            check_row(part.table, row, identifier)
    return MessageRows(identifier, parts)


def check_row(table: Table, row: Row, message_id: str) -> None:
    """Raise ``RowConversionError`` for a value its column cannot hold."""
    bounds = dict(table.int_bounds)
    for column, value in zip(table.columns, row, strict=False):
        problem = _value_problem(value, bounds.get(column))
        if problem:
            raise RowConversionError(message_id, f"{table.name}.{column}: {problem}")


def _value_problem(value: object, bounds: tuple[int, int] | None) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and bounds is not None and not bounds[0] <= value <= bounds[1]:
        return f"{value} is outside [{bounds[0]}, {bounds[1]}]"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return f"text is not valid UTF-8 ({error.reason})"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _value_problem(key, None) or _value_problem(item, None)
            if problem:
                return problem
    return None
