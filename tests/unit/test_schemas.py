"""Message models: JSON round trips, header round trips, and what they refuse."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from schemas import Alert, BoundingBox, DeadLetter, FrameDetections, FrameMeta, ImageStats, StageTimings
from schemas.frames import HEADER_PREFIX
from tests.factories import (
    make_alert,
    make_alert_review,
    make_dead_letter,
    make_detection,
    make_frame_detections,
    make_frame_meta,
    make_model_alert,
)

BUILDERS: list[Callable[[], BaseModel]] = [
    make_frame_meta,
    lambda: make_frame_meta(stats=ImageStats(brightness=117.25, sharpness=1e-3)),
    make_frame_detections,
    lambda: make_frame_detections(
        detections=[make_detection(), make_detection("car", 0.51, (0.5, 1.25, 639.0, 479.5))],
        stats=ImageStats(brightness=0.0, sharpness=12345.678),
        timings=StageTimings(ingest_ms=1.5, triton_ms=23.0),
    ),
    make_alert,
    lambda: make_alert(zone="door", object_count=3),
    make_model_alert,
    lambda: make_model_alert("gate.2", "class_mix", 942, state="ended", test="chi2", category="person"),
    make_alert_review,
    lambda: make_alert_review(verdict="false_positive", corrected_class="dog", note="a dog"),
    make_dead_letter,
    lambda: make_dead_letter(original=bytes(range(256)), key=b"\xff\xfe", headers={"fs-camera-id": "cam-1"}),
]


@pytest.mark.parametrize("build", BUILDERS)
def test_json_round_trip(build: Callable[[], BaseModel]) -> None:
    message = build()
    text = message.model_dump_json()
    assert type(message).model_validate_json(text) == message
    assert json.loads(text)["schema_version"] == 1


@pytest.mark.parametrize(
    "meta",
    [
        make_frame_meta(),
        make_frame_meta("gate.2", 12345, width=1920, height=1080, content_type="image/png"),
        make_frame_meta(stats=ImageStats(brightness=0.1 + 0.2, sharpness=987.654321)),
        make_frame_meta(stats=ImageStats(brightness=12.5, sharpness=3.0, contrast=0.1 + 0.7)),
        make_frame_meta(captured_at=datetime(2025, 6, 1, 8, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))),
    ],
)
def test_frame_meta_round_trips_through_headers(meta: FrameMeta) -> None:
    headers = meta.to_headers()
    assert all(name.startswith(HEADER_PREFIX) and isinstance(value, bytes) for name, value in headers)
    assert FrameMeta.from_headers(headers) == meta
    assert FrameMeta.from_headers(dict(headers)) == meta


def test_from_headers_ignores_foreign_headers_and_names_missing_fields() -> None:
    headers = [*make_frame_meta().to_headers(), ("traceparent", b"00-abc"), ("other", None)]
    assert FrameMeta.from_headers(headers) == make_frame_meta()
    without_seq = [(name, value) for name, value in make_frame_meta().to_headers() if name != "fs-frame-seq"]
    with pytest.raises(ValidationError, match="frame_seq"):
        FrameMeta.from_headers(without_seq)


def test_from_headers_rejects_non_utf8() -> None:
    headers = [(name, b"\xff" if name == "fs-camera-id" else value) for name, value in make_frame_meta().to_headers()]
    with pytest.raises(ValueError):
        FrameMeta.from_headers(headers)


@pytest.mark.parametrize("build", BUILDERS[::2])
def test_messages_are_frozen(build: Callable[[], BaseModel]) -> None:
    message = build()
    field = next(iter(type(message).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(message, field, getattr(message, field))


@pytest.mark.parametrize("build", BUILDERS[::2])
def test_unknown_fields_are_rejected(build: Callable[[], BaseModel]) -> None:
    data = json.loads(build().model_dump_json()) | {"colour": "red"}
    with pytest.raises(ValidationError, match="colour\n  Extra inputs are not permitted"):
        type(build()).model_validate(data)


@pytest.mark.parametrize(
    ("model", "field"),
    [(FrameMeta, "captured_at"), (FrameDetections, "detected_at"), (Alert, "raised_at"), (DeadLetter, "failed_at")],
)
def test_naive_datetimes_are_rejected(model: type[BaseModel], field: str) -> None:
    builder = {FrameMeta: make_frame_meta, FrameDetections: make_frame_detections, Alert: make_alert}.get(
        model, make_dead_letter
    )
    data = json.loads(builder().model_dump_json())
    data[field] = "2025-01-01T12:00:00"
    with pytest.raises(ValidationError, match="timestamp must carry a timezone"):
        model.model_validate_json(json.dumps(data))
    with pytest.raises(ValidationError, match="timestamp must carry a timezone"):
        model.model_validate(data | {field: datetime(2025, 1, 1, 12)})


def test_timestamps_are_normalised_to_utc() -> None:
    local = datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    meta = make_frame_meta(captured_at=local)
    assert meta.captured_at.utcoffset() == timedelta(0) and meta.captured_at == local
    assert json.loads(meta.model_dump_json())["captured_at"] == "2025-01-01T12:00:00Z"


def test_dead_letter_bytes_are_standard_base64() -> None:
    original = bytes([0xFB, 0xFF, 0xFE, 0x00]) * 3  # encodes to '+' and '/' in the standard alphabet
    letter = make_dead_letter(original=original, key=b"\xfb\xff")
    data = json.loads(letter.model_dump_json())
    assert base64.b64decode(data["original"], validate=True) == original
    assert base64.b64decode(data["key"], validate=True) == b"\xfb\xff"
    assert letter.model_dump()["original"] == original  # Python mode keeps bytes


def test_dead_letter_reads_url_safe_base64_too() -> None:
    data = json.loads(make_dead_letter().model_dump_json())
    data["original"] = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()
    assert DeadLetter.model_validate_json(json.dumps(data)).original == b"\xfb\xff\xfe"


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: BoundingBox(x1=10, y1=0, x2=5, y2=10), "x1 <= x2"),
        (lambda: BoundingBox(x1=float("nan"), y1=0, x2=5, y2=10), "finite number"),
        (lambda: StageTimings(triton_ms=float("inf")), "finite number"),
        (lambda: make_detection(score=1.01), "less than or equal to 1"),
        (lambda: make_frame_meta(camera_id="cam 1"), "should match pattern"),
        (lambda: make_frame_meta(frame_seq=-1), "greater than or equal to 0"),
        (lambda: make_frame_meta(schema_version=2), "Input should be 1"),
        (lambda: make_dead_letter(stage="somewhere"), "Input should be 'ingest'"),
        (lambda: make_alert(object_count=0), "greater than or equal to 1"),
    ],
)
def test_invalid_values_are_rejected(build: Callable[[], BaseModel], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        build()


def test_detection_ids_follow_the_frame() -> None:
    frame = make_frame_detections("gate", 5, detections=[make_detection(), make_detection("dog")])
    assert frame.event_id == "gate:5"
    assert [d.detection_id for d in frame.detections] == ["gate:5:0", "gate:5:1"]
    assert [d.class_id for d in frame.detections] == [0, 16]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"review_id": "other"}, "review_id must be"),
        ({"verdict": "maybe"}, "verdict"),
        ({"reviewer": ""}, "reviewer"),
        ({"camera_id": "bad camera"}, "camera_id"),
        ({"corrected_class": ""}, "corrected_class"),
    ],
)
def test_alert_review_refuses(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        make_alert_review(**overrides)


def test_alert_review_copies_the_alert() -> None:
    alert = make_alert("person-at-door", "gate.2", 41)
    review = make_alert_review(alert, "false_positive", "bob")
    assert review.review_id == "person-at-door:gate.2:41:bob"
    assert (review.camera_id, review.rule_id, review.event_id) == ("gate.2", "person-at-door", "gate.2:41")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"model_alert_id": "drift:cam-1:brightness:1"}, "model_alert_id must be"),
        ({"statistic": "colour"}, "statistic"),
        ({"state": "ongoing"}, "state"),
        ({"p_value": 1.5}, "p_value"),
        ({"effect_size": -0.1}, "effect_size"),
        ({"test_statistic": float("nan")}, "test_statistic"),
    ],
)
def test_model_alert_refuses(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        make_model_alert(**overrides)
