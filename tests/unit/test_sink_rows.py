"""Messages to ClickHouse rows: field mapping, deterministic ids, and values a column cannot hold."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from schemas import ImageStats, StageTimings
from streams.sinks.rows import (
    ALERT_REVIEWS,
    ALERTS,
    DEAD_LETTERS,
    DETECTIONS,
    FRAMES,
    MODEL_ALERTS,
    ORIGINAL_HEAD_BYTES,
    TABLES,
    AlertRow,
    RowConversionError,
    alert_row,
    dead_letter_id,
    dead_letter_row,
    detection_rows,
    frame_row,
    message_id,
    rows_for,
)
from tests.factories import (
    BASE_TIME,
    make_alert,
    make_alert_review,
    make_dead_letter,
    make_detection,
    make_frame_detections,
    make_model_alert,
)


def test_frame_row_carries_timings_stats_and_object_count() -> None:
    frame = make_frame_detections(
        "cam-7",
        42,
        [make_detection("person"), make_detection("car")],
        stats=ImageStats(brightness=101.5, sharpness=33.0),
        timings=StageTimings(ingest_ms=2.0, queue_ms=15.5, batch_wait_ms=4.0, triton_ms=22.25),
    )
    row = frame_row(frame)
    assert row.event_id == "cam-7:42"
    assert (row.camera_id, row.frame_seq, row.object_count) == ("cam-7", 42, 2)
    assert (row.captured_at, row.detected_at) == (frame.captured_at, frame.detected_at)
    assert (row.brightness, row.sharpness) == (101.5, 33.0)
    assert (row.ingest_ms, row.queue_ms, row.batch_wait_ms, row.triton_ms) == (2.0, 15.5, 4.0, 22.25)
    assert (row.model_name, row.model_version, row.width, row.height) == ("detector", "1", 640, 480)


def test_frame_row_without_stats_or_timings_stores_nulls() -> None:
    row = frame_row(make_frame_detections())
    assert row.object_count == 0
    assert (row.brightness, row.sharpness, row.ingest_ms, row.queue_ms, row.batch_wait_ms, row.triton_ms) == (None,) * 6


def test_detection_rows_number_objects_and_copy_the_frame_context() -> None:
    frame = make_frame_detections("cam-2", 9, [make_detection("dog", 0.7, (1, 2, 30, 40)), make_detection("cat", 0.6)])
    rows = detection_rows(frame)
    assert [row.detection_id for row in rows] == ["cam-2:9:0", "cam-2:9:1"]
    assert [row.object_index for row in rows] == [0, 1]
    assert [row.class_name for row in rows] == ["dog", "cat"]
    first = rows[0]
    assert (first.event_id, first.camera_id, first.frame_seq, first.captured_at) == (
        "cam-2:9",
        "cam-2",
        9,
        frame.captured_at,
    )
    assert (first.x1, first.y1, first.x2, first.y2, first.score) == (1, 2, 30, 40, 0.7)
    assert first.class_id == 16  # COCO "dog"


def test_alert_row_stores_severity_as_its_enum_text_and_keeps_the_zone() -> None:
    alert = make_alert("loitering", "cam-3", 5, zone="gate", object_count=3)
    row = alert_row(alert)
    assert isinstance(row, AlertRow)
    assert (row.alert_id, row.rule_id, row.severity, row.zone, row.object_count) == (
        "loitering:cam-3:5",
        "loitering",
        "warning",
        "gate",
        3,
    )
    assert row.message == "person detected"
    assert row.raised_at - row.captured_at == timedelta(milliseconds=100)


def test_dead_letter_row_keeps_size_digest_and_only_the_head_of_the_original() -> None:
    original = bytes(range(256)) * 40  # 10 KiB
    letter = make_dead_letter(original=original, key=b"cam-1", headers={"fs-camera-id": "cam-1"})
    row = dead_letter_row(letter)
    assert row.original_size == len(original)
    assert row.original_sha256 == hashlib.sha256(original).hexdigest()
    assert row.original_head == original[:ORIGINAL_HEAD_BYTES]
    assert (row.record_key, row.headers, row.stage, row.failed_at) == (
        b"cam-1",
        {"fs-camera-id": "cam-1"},
        "detect",
        BASE_TIME,
    )


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({}, {"reason": "another wording", "failed_at": BASE_TIME + timedelta(hours=1)}, True),
        ({}, {"source_offset": 1}, False),
        ({}, {"source_partition": 3}, False),
        ({}, {"stage": "persist"}, False),
        ({"source_offset": None}, {"source_offset": None, "failed_at": BASE_TIME + timedelta(days=1)}, True),
        ({"source_offset": None}, {"source_offset": None, "original": b"other bytes"}, False),
    ],
)
def test_dead_letter_id_is_the_source_record_and_stage(first: dict, second: dict, same: bool) -> None:
    """A record re-processed after a crash (new time, new wording) keeps its id; another record does not."""
    assert (dead_letter_id(make_dead_letter(**first)) == dead_letter_id(make_dead_letter(**second))) is same


def test_rows_for_dispatches_every_message_kind_to_its_tables() -> None:
    frame = make_frame_detections(detections=[make_detection()])
    assert [(part.table, len(part.rows)) for part in rows_for(frame).parts] == [(FRAMES, 1), (DETECTIONS, 1)]
    assert [part.table for part in rows_for(make_alert()).parts] == [ALERTS]
    assert [part.table for part in rows_for(make_dead_letter()).parts] == [DEAD_LETTERS]
    assert rows_for(frame).message_id == message_id(frame) == "cam-1:0"


def test_rows_for_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="cannot persist a str"):
        rows_for("not a message")  # type: ignore[arg-type]


def test_row_fields_are_the_insert_columns_and_contain_the_id_and_time() -> None:
    for table in TABLES:
        assert table.id_column in table.columns and table.time_column in table.columns
        assert set(table.lookup_columns) <= set(table.columns)
        assert {column for column, _ in table.int_bounds} <= set(table.columns)


@pytest.mark.parametrize(
    ("build", "column", "problem"),
    [
        (lambda: make_frame_detections(frame_seq=2**64, captured_at=BASE_TIME), "frames.frame_seq", "outside"),
        (lambda: make_frame_detections(width=2**32), "frames.width", "outside"),
        (lambda: make_frame_detections(detections=[make_detection(class_id=70_000)]), "detections.class_id", "outside"),
        (lambda: make_frame_detections(model_name="bad\ud800name"), "frames.model_name", "UTF-8"),
        (lambda: make_alert(message="broken \udcff text"), "alerts.message", "UTF-8"),
        (lambda: make_dead_letter(source_partition=2**31), "dead_letters.source_partition", "outside"),
        (lambda: make_dead_letter(headers={"k": "\ud800"}), "dead_letters.headers", "UTF-8"),
    ],
)
def test_values_a_column_cannot_hold_fail_naming_message_and_column(build, column: str, problem: str) -> None:
    message = build()
    with pytest.raises(RowConversionError) as caught:
        rows_for(message)
    assert caught.value.message_id == message_id(message)
    assert str(caught.value).startswith(f"{message_id(message)}: {column}: ")
    assert problem in caught.value.problem


def test_a_valid_message_at_the_column_limits_converts() -> None:
    frame = make_frame_detections(
        frame_seq=2**64 - 1, captured_at=BASE_TIME, width=2**32 - 1, detections=[make_detection(class_id=65_535)]
    )
    parts = rows_for(frame).parts
    assert parts[0].rows[0].frame_seq == 2**64 - 1
    assert parts[1].rows[0].class_id == 65_535


def test_model_alert_row_copies_the_alert_and_dispatches_to_model_alerts() -> None:
    alert = make_model_alert("gate.2", "class_mix", 900, state="ended", test="chi2", category="person")
    (part,) = rows_for(alert).parts
    assert part.table is MODEL_ALERTS and message_id(alert) == "drift:gate.2:class_mix:900"
    row = part.rows[0]
    assert (row.model_alert_id, row.state, row.statistic, row.category) == (
        alert.model_alert_id,
        "ended",
        "class_mix",
        "person",
    )
    assert (row.window_first_seq, row.frame_seq, row.captured_at) == (601, 900, alert.captured_at)


def test_a_changed_verdict_is_a_new_review_row_and_a_replay_is_the_same_row() -> None:
    first = make_alert_review(verdict="true_positive")
    replay = make_alert_review(verdict="true_positive")
    changed = make_alert_review(verdict="false_positive", reviewed_at=first.reviewed_at + timedelta(hours=1))
    (part,) = rows_for(first).parts
    assert part.table is ALERT_REVIEWS
    ids = [ALERT_REVIEWS.row_id(rows_for(review).parts[0].rows[0]) for review in (first, replay, changed)]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0].startswith(first.review_id + "@") and message_id(first) == ids[0]
    assert part.rows[0].verdict == "true_positive" and part.rows[0].event_id == first.event_id


def test_frame_row_carries_contrast_when_present() -> None:
    frame = make_frame_detections(stats=ImageStats(brightness=90.0, sharpness=5.0, contrast=41.5))
    assert frame_row(frame).contrast == 41.5
    assert frame_row(make_frame_detections(stats=ImageStats(brightness=90.0, sharpness=5.0))).contrast is None
