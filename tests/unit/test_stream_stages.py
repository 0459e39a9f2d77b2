"""The stream stages' pure parts: parsing records, building outputs and dead letters, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from processors.detector import ObjectDetections
from schemas import DeadLetter, StageTimings
from streams.app import Stage, app_id, parse_stages
from streams.deadletter import DeadLetterRule, Rejection, build_dead_letter
from streams.delivery import Outgoing
from streams.detect import FrameArrival, parse_frame, timings_of, to_detections
from streams.inference import InferenceUnavailable
from streams.metrics import WorkerMetrics
from streams.records import Handled, parse_detections, parse_frame_detections, process_one
from streams.retry import RetryCancelled, RetryPolicy
from streams.topics import TopicNames
from tests.factories import BASE_TIME, make_frame_detections, make_frame_meta


def event(value: bytes | None, headers: object = (), key: bytes | None = b"cam-1", offset: int = 7) -> SimpleNamespace:
    """The parts of a faust event the stages read (topic, partition, offset, key, value, headers)."""
    message = SimpleNamespace(
        topic="vision.frames.v1",
        partition=2,
        offset=offset,
        key=key,
        value=value,
        headers=list(headers),
        tp=TP("vision.frames.v1", 2),
    )
    return SimpleNamespace(message=message)


# --- app ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("detect", (Stage.DETECT,)),
        ("persist, detect", (Stage.DETECT, Stage.PERSIST)),
        ("detect,alert,persist", (Stage.DETECT, Stage.ALERT, Stage.PERSIST)),
        ("detect,detect", (Stage.DETECT,)),
        ("detect,watch", ValueError),
        ("monitor,track,detect", (Stage.DETECT, Stage.TRACK, Stage.MONITOR)),
        ("", ValueError),
    ],
)
def test_parse_stages(text: str, expected: tuple[Stage, ...] | type[Exception]) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected, match="choose from detect, track, alert, persist, monitor"):
            parse_stages(text)
    else:
        assert parse_stages(text) == expected


def test_one_consumer_group_per_stage_set_and_one_changelog_per_deployment() -> None:
    assert app_id("t1.", [Stage.PERSIST, Stage.DETECT]) == "t1.framestream-detect-persist"
    assert app_id("", [Stage.DETECT]) == app_id("", (Stage.DETECT,))
    assert TopicNames("t1.").cooldowns_changelog == "t1.framestream.alert.cooldowns-changelog"


# --- detect -------------------------------------------------------------------------------------


def test_parse_frame_reads_the_headers_ingest_writes() -> None:
    meta = make_frame_meta("cam-7", 42)
    assert parse_frame(event(b"\xff\xd8jpeg", meta.to_headers())) == meta


@pytest.mark.parametrize(
    ("value", "headers", "error_type", "names"),
    [
        (b"", make_frame_meta().to_headers(), "EmptyRecord", "no value"),
        (None, make_frame_meta().to_headers(), "EmptyRecord", "no value"),
        (b"jpeg", [], "ValidationError", "camera_id"),
        (b"jpeg", [("fs-camera-id", b"cam 1"), ("fs-frame-seq", b"1")], "ValidationError", "camera_id"),
        (b"jpeg", [("fs-camera-id", b"cam-1"), ("fs-frame-seq", b"-1")], "ValidationError", "frame_seq"),
        (b"jpeg", [("fs-camera-id", b"\xff\xfe")], "UnicodeDecodeError", "utf-8"),
    ],
)
def test_parse_frame_rejects_what_cannot_be_a_frame(
    value: bytes | None, headers: list, error_type: str, names: str
) -> None:
    rejection = parse_frame(event(value, headers))
    assert isinstance(rejection, Rejection)
    assert rejection.error_type == error_type
    assert names in rejection.reason


def test_to_detections_names_classes_and_numbers_ids_deterministically() -> None:
    found = ObjectDetections(
        boxes=np.array([[10, 20, 30, 40], [0, 0, 5, 5]], np.float32),
        scores=np.array([0.9, 1.0000001], np.float32),
        class_ids=np.array([0, 16], np.int32),
    )
    detections = to_detections(make_frame_meta("cam-3", 9), found)
    assert [d.detection_id for d in detections] == ["cam-3:9:0", "cam-3:9:1"]
    assert [d.class_name for d in detections] == ["person", "dog"]
    assert detections[1].score == 1.0, "float32 rounding above 1 is clipped into the schema's range"
    assert (detections[0].box.x1, detections[0].box.y2) == (10.0, 40.0)


def test_timings_measure_each_hop_and_never_go_negative() -> None:
    meta = make_frame_meta(captured_at=BASE_TIME)
    produced = BASE_TIME.timestamp() + 0.010
    arrival = FrameArrival(produced_at=produced, picked_up_at=produced + 0.200, batched_at=produced + 0.205)
    timings = timings_of(meta, arrival, triton_s=0.030)
    assert timings.ingest_ms == pytest.approx(10.0, abs=0.01)
    assert timings.queue_ms == pytest.approx(200.0, abs=0.01)
    assert timings.batch_wait_ms == pytest.approx(5.0, abs=0.01)
    assert timings.triton_ms == pytest.approx(30.0)
    skewed = FrameArrival(produced_at=BASE_TIME.timestamp() - 1, picked_up_at=produced, batched_at=produced)
    assert timings_of(meta, skewed, 0.0).ingest_ms == 0.0, "a producer clock behind the camera's"
    assert timings_of(meta, FrameArrival(None, produced, produced), 0.0).queue_ms is None


def test_stage_timings_of_a_frame_fit_the_schema() -> None:
    timings = timings_of(make_frame_meta(), FrameArrival(None, 0.0, 0.0), 0.0)
    assert isinstance(timings, StageTimings) and timings.ingest_ms is None


# --- records (alert, track, monitor, shadow) ------------------------------------------------------


def test_parse_detections_accepts_the_detect_stage_output() -> None:
    frame = make_frame_detections("cam-1", 3)
    assert parse_detections(event(frame.model_dump_json().encode(), key=b"cam-1")) == frame


@pytest.mark.parametrize(
    ("value", "key", "error_type"),
    [
        (b"{not json", b"cam-1", "ValidationError"),
        (make_frame_detections("cam-1").model_dump_json().encode(), b"cam-2", "KeyMismatch"),
        (make_frame_detections("cam-1").model_dump_json().encode(), None, "KeyMismatch"),
    ],
)
def test_parse_detections_rejects(value: bytes, key: bytes | None, error_type: str) -> None:
    assert parse_detections(event(value, key=key))[1] == error_type


def test_parse_frame_detections_takes_any_key_but_not_an_invalid_record() -> None:
    frame = make_frame_detections("cam-1", 3)
    assert parse_frame_detections(event(frame.model_dump_json().encode(), key=b"cam-2")) == frame
    assert parse_frame_detections(event(b"{not json"))[1] == "ValidationError"


# --- dead letters -------------------------------------------------------------------------------


def test_dead_letter_keeps_the_original_bytes_key_and_headers() -> None:
    original = b"\x00\xffnot an image"
    letter = build_dead_letter(
        event(original, [("fs-camera-id", b"cam-1"), ("odd", b"\xff")]),
        stage="detect",
        reason="cannot decode",
        error_type="InferenceRejected",
    )
    assert letter.original == original and letter.key == b"cam-1"
    assert letter.headers == {"fs-camera-id": "cam-1", "odd": "\\xff"}
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("vision.frames.v1", 2, 7)
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_dead_letter_record_counts_by_stage_and_error_class() -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    topic = SimpleNamespace(name="dl")
    record = DeadLetterRule(topic, "alert", metrics).record(event(b"x"), Rejection("bad", "ValidationError"))
    assert record.topic is topic and record.key == b"cam-1"
    assert DeadLetter.model_validate_json(record.value).stage == "alert"
    assert (
        metrics.registry.get_sample_value(
            "framestream_dead_letters_total", {"stage": "alert", "reason": "ValidationError"}
        )
        == 1.0
    )


class Boom(Exception):
    """A bug in a stage: an error no check foresaw."""


def work_raising(error: BaseException | None) -> Callable[[], str]:
    def work() -> str:
        if error is not None:
            raise error
        return "stored"

    return work


# What the rule makes of the work on one record: its result, a Rejection (reason, error type) that
# keeps the error for its traceback, or the error passed through.
GUARD_CASES = [
    (None, "stored"),
    (Boom("bad state"), ("unexpected error in persist: Boom('bad state')", "Boom")),
    (KeyError("rule-7"), ("unexpected error in persist: KeyError('rule-7')", "KeyError")),
    (InferenceUnavailable("triton down"), InferenceUnavailable),  # transient: retried where it happened
    (ConnectionError("refused"), ConnectionError),
    (TimeoutError(), TimeoutError),
    (RetryCancelled("stopping"), RetryCancelled),
]


@pytest.mark.parametrize(("error", "expected"), GUARD_CASES)
def test_dead_letter_rule_guards_one_record(error: BaseException | None, expected: object) -> None:
    rule = DeadLetterRule(SimpleNamespace(name="dl"), "persist", WorkerMetrics("w", CollectorRegistry()))
    if isinstance(expected, type):
        with pytest.raises(expected):
            rule.guard(work_raising(error))
    else:
        assert_outcome(rule.guard(work_raising(error)), expected, error)


def assert_outcome(outcome: object, expected: object, error: BaseException | None) -> None:
    if isinstance(expected, tuple):
        assert isinstance(outcome, Rejection) and outcome == (*expected, error)
    else:
        assert outcome == expected


@pytest.mark.parametrize(("error", "expected"), GUARD_CASES)
def test_dead_letter_rule_guards_one_record_async(error: BaseException | None, expected: object) -> None:
    rule = DeadLetterRule(SimpleNamespace(name="dl"), "persist", WorkerMetrics("w", CollectorRegistry()))

    async def work() -> str:
        return work_raising(error)()

    if isinstance(expected, type):
        with pytest.raises(expected):
            asyncio.run(rule.guard_async(work))
    else:
        assert_outcome(asyncio.run(rule.guard_async(work)), expected, error)


def test_dead_letter_rule_never_catches_a_cancellation() -> None:
    rule = DeadLetterRule(SimpleNamespace(name="dl"), "detect", WorkerMetrics("w", CollectorRegistry()))

    async def work() -> str:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(rule.guard_async(work))


@pytest.mark.parametrize(
    ("rejection", "level", "with_traceback"),
    [
        (Rejection("invalid FrameDetections", "ValidationError"), logging.WARNING, False),
        (Rejection("unexpected error in alert: Boom()", "Boom", Boom()), logging.ERROR, True),
    ],
)
def test_dead_letter_rule_logs_each_letter_once_and_keeps_the_original(
    rejection: Rejection, level: int, with_traceback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    rule = DeadLetterRule(SimpleNamespace(name="dl"), "alert", metrics)
    with caplog.at_level(logging.WARNING, logger="streams.deadletter"):
        record = rule.record(event(b"\x00raw", key=b"cam-9", offset=11), rejection)
    letter = DeadLetter.model_validate_json(record.value)
    assert (letter.stage, letter.reason, letter.error_type) == ("alert", rejection.reason, rejection.error_type)
    assert (letter.original, letter.key, letter.source_offset, record.key) == (b"\x00raw", b"cam-9", 11, b"cam-9")
    assert [(r.levelno, r.exc_info is not None) for r in caplog.records] == [(level, with_traceback)]
    assert (
        metrics.registry.get_sample_value(
            "framestream_dead_letters_total", {"stage": "alert", "reason": rejection.error_type}
        )
        == 1.0
    )


class DeliveredTopic:
    """Stands in for a faust topic: every record sent is delivered at once."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []

    async def send(self, *, key: bytes | None, value: bytes, force: bool) -> asyncio.Future:
        self.delivered.append(value)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


RETRY = RetryPolicy(initial_s=0.01, max_s=0.01)

# What process_one makes of a handler's result: the outcome counted, and whether a dead letter went out.
PROCESS_CASES = [
    ([b"a", b"b"], "ok", False),
    ([], "ok", False),
    ("replayed", "replayed", False),
    (Rejection("invalid FrameDetections", "ValidationError"), "deadletter", True),
    (Boom("bad state"), "deadletter", True),
]


@pytest.mark.parametrize(("result", "outcome", "dead_letter"), PROCESS_CASES)
def test_process_one_produces_then_counts_one_outcome(result: object, outcome: str, dead_letter: bool) -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    outputs, dead_letters = DeliveredTopic(), DeliveredTopic()
    rule = DeadLetterRule(dead_letters, "monitor", metrics)

    async def handle(_: object) -> Handled:
        if isinstance(result, Exception):
            raise result
        return [Outgoing(outputs, b"k", value) for value in result] if isinstance(result, list) else result

    asyncio.run(process_one(event(b"x"), handle, step="monitor", dead_letters=rule, retry=RETRY))
    assert outputs.delivered == (result if isinstance(result, list) else [])
    assert [DeadLetter.model_validate_json(v).stage for v in dead_letters.delivered] == ["monitor"] * dead_letter
    sample = metrics.registry.get_sample_value
    assert sample("framestream_frames_total", {"stage": "monitor", "outcome": outcome}) == 1.0
    assert sample("framestream_stage_latency_seconds_count", {"stage": "monitor", "step": "monitor"}) == 1.0


def test_process_one_passes_a_transient_fault_through_uncounted() -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    rule = DeadLetterRule(DeliveredTopic(), "track", metrics)

    async def handle(_: object) -> Handled:
        raise ConnectionError("broker went away")

    with pytest.raises(ConnectionError):
        asyncio.run(process_one(event(b"x"), handle, step="track", dead_letters=rule, retry=RETRY))
    assert metrics.registry.get_sample_value("framestream_frames_total", {"stage": "track", "outcome": "ok"}) is None


# --- metrics ------------------------------------------------------------------------------------


class ConsumerView:
    def __init__(self, highwaters: dict[TP, int]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


def test_lag_is_the_high_watermark_minus_the_next_offset_to_process() -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    a, b, idle = TP("frames", 0), TP("frames", 1), TP("frames", 2)
    metrics.processed(a, 9)
    metrics.processed(a, 4)  # a replayed, older offset does not move the position back
    metrics.processed(b, 0)
    metrics.update_lag(ConsumerView({a: 25, b: 1, idle: 100}))
    sample = metrics.registry.get_sample_value
    assert sample("framestream_consumer_lag_records", {"topic": "frames", "partition": "0"}) == 15
    assert sample("framestream_consumer_lag_records", {"topic": "frames", "partition": "1"}) == 0
    assert sample("framestream_consumer_lag_records", {"topic": "frames", "partition": "2"}) is None


def test_assignment_gauge_follows_rebalances() -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    metrics.update_assignment({TP("frames", 0), TP("frames", 3), TP("changelog", 0)})
    sample = metrics.registry.get_sample_value
    assert sample("framestream_assigned_partitions", {"topic": "frames"}) == 2
    metrics.update_assignment(set())
    assert sample("framestream_assigned_partitions", {"topic": "frames"}) is None


def test_request_in_flight_gauge_goes_back_down_on_errors() -> None:
    metrics = WorkerMetrics("w", CollectorRegistry())
    with pytest.raises(RuntimeError):
        with metrics.request_in_flight():
            assert metrics.registry.get_sample_value("framestream_triton_requests_in_flight") == 1
            raise RuntimeError
    assert metrics.registry.get_sample_value("framestream_triton_requests_in_flight") == 0
