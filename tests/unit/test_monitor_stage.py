"""streams.monitor without a broker: records in, model alerts (or rejections) out."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from processors.drift import DriftMonitor
from schemas import ImageStats
from schemas.model_alerts import ModelAlert
from streams.deadletter import Rejection
from streams.delivery import Outgoing
from streams.metrics import WorkerMetrics
from streams.monitor import MonitorSettings, MonitorStage
from streams.topics import TopicNames
from tests.factories import make_alert_review, make_detection, make_frame_detections

TOPICS = TopicNames("t.")
SETTINGS = MonitorSettings(reference_frames=40, window_frames=40, test_every=5, min_samples=20)


def record(topic: str, value: bytes, key: bytes | None = b"cam-1", offset: int = 0) -> SimpleNamespace:
    message = SimpleNamespace(
        topic=topic, partition=0, offset=offset, key=key, value=value, headers=[], tp=TP(topic, 0)
    )
    return SimpleNamespace(message=message)


def frame_record(seq: int, brightness: float, camera: str = "cam-1") -> SimpleNamespace:
    frame = make_frame_detections(
        camera,
        seq,
        [make_detection("person", 0.8)],
        stats=ImageStats(brightness=brightness + (seq % 7), sharpness=300.0 + seq % 5, contrast=50.0),
    )
    return record(TOPICS.detections, frame.model_dump_json().encode(), camera.encode(), seq)


def new_stage() -> MonitorStage:
    context = SimpleNamespace(metrics=WorkerMetrics("w", CollectorRegistry()), topics=TOPICS, retry=None)
    topic = SimpleNamespace(name="out")
    return MonitorStage(context, DriftMonitor(SETTINGS.drift_config()), topic, topic)  # type: ignore[arg-type]


def handle(stage: MonitorStage, event: SimpleNamespace) -> list[Outgoing] | Rejection:
    return asyncio.run(stage._handle(event))  # noqa: SLF001 - the stage's work without the producing


def test_a_darkened_camera_raises_one_model_alert_and_a_stable_one_none() -> None:
    stage = new_stage()
    produced: list[Outgoing] = []
    for seq in range(200):
        produced += handle(stage, frame_record(seq, 120.0 if seq < 100 else 40.0, "cam-dark"))
        produced += handle(stage, frame_record(seq, 120.0, "cam-stable"))
    alerts = [ModelAlert.model_validate_json(item.value) for item in produced]
    assert [(a.camera_id, a.statistic, a.state) for a in alerts] == [("cam-dark", "brightness", "started")]
    (alert,) = alerts
    assert produced[0].key == b"cam-dark" and alert.model_alert_id == f"drift:cam-dark:brightness:{alert.frame_seq}"
    assert 100 <= alert.frame_seq < 100 + SETTINGS.window_frames
    assert (alert.reference_first_seq, alert.reference_last_seq) == (0, 39)
    assert alert.window_first_seq == alert.frame_seq - 39 and alert.reference_value > alert.current_value
    assert "brightness drifted" in alert.message
    assert stage.is_drifting("cam-dark") and not stage.is_drifting("cam-stable")
    assert stage.raised.labels(statistic="brightness", state="started")._value.get() == 1


@pytest.mark.parametrize(
    ("topic", "value", "key", "error_type"),
    [
        (TOPICS.detections, b"{not json", b"cam-1", "ValidationError"),
        (TOPICS.detections, make_frame_detections("cam-1").model_dump_json().encode(), b"cam-2", "KeyMismatch"),
        (TOPICS.alert_reviews, b'{"verdict": "maybe"}', b"cam-1", "ValidationError"),
    ],
)
def test_records_that_do_not_parse_are_rejected(topic: str, value: bytes, key: bytes, error_type: str) -> None:
    outcome = handle(new_stage(), record(topic, value, key))
    assert isinstance(outcome, Rejection) and outcome.error_type == error_type


def test_a_review_is_accepted_and_produces_nothing_by_itself() -> None:
    review = make_alert_review()
    assert handle(new_stage(), record(TOPICS.alert_reviews, review.model_dump_json().encode())) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [({"min_psi": 0.1, "end_psi": 0.2}, "end_psi"), ({"p_value": 0.05, "end_p_value": 0.01}, "end_p_value")],
)
def test_inconsistent_settings_stop_the_stage_at_start(fields: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MonitorSettings(**fields).drift_config()
