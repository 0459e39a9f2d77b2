"""The track stage's pure parts: parsing its input, its tracker settings, reading stored state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from processors.tracking import SceneTracker, TrackerConfig
from schemas.base import utc_now
from schemas.rules import RuleSet
from streams.context import WorkerSettings
from streams.metrics import WorkerMetrics
from streams.records import parse_detections
from streams.topics import TopicNames
from streams.track import TrackStage, tracker_config
from tests.factories import make_detection, make_frame_detections


def event(value: bytes, key: bytes | None = b"cam-1") -> SimpleNamespace:
    message = SimpleNamespace(
        topic="vision.detections.v1", partition=0, offset=3, key=key, value=value, headers=[], tp=TP("t", 0)
    )
    return SimpleNamespace(message=message)


def test_tracker_changelog_is_named_per_deployment() -> None:
    assert TopicNames("t1.").tracker_changelog == "t1.framestream.track.state-changelog"


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        (make_frame_detections("cam-1", 2).model_dump_json().encode(), b"cam-1", None),
        (b"{", b"cam-1", "ValidationError"),
        (make_frame_detections("cam-1").model_dump_json().encode(), b"cam-9", "KeyMismatch"),
    ],
)
def test_parse_detections(value: bytes, key: bytes, expected: str | None) -> None:
    parsed = parse_detections(event(value, key))
    assert (parsed[1] if isinstance(parsed, tuple) else None) == expected


def test_tracker_config_follows_the_worker_settings() -> None:
    settings = WorkerSettings(track_frame_rate=25, track_lost_s=4, track_activation_score=0.6)
    context = SimpleNamespace(worker=settings)
    assert tracker_config(context) == TrackerConfig(frame_rate=25, lost_track_s=4, activation_score=0.6, high_score=0.6)


def stage(table: dict) -> TrackStage:
    context = SimpleNamespace(metrics=WorkerMetrics("w", registry=CollectorRegistry()), retry=None)
    tracker = SceneTracker(RuleSet(rules=()))
    return TrackStage(context, tracker, table, None, None, None)  # type: ignore[arg-type]


def test_stored_state_round_trips_through_the_table_as_json() -> None:
    tracker = SceneTracker(RuleSet(rules=()))
    frame = make_frame_detections("cam-1", 0, [make_detection("person", 0.9)])
    step = tracker.update(frame, None, tracked_at=utc_now())
    table = {"cam-1": step.state.model_dump(mode="json")}
    assert stage(table)._stored_state("cam-1") == step.state
    assert stage(table)._stored_state("cam-2") is None


def test_an_unreadable_stored_state_starts_anew() -> None:
    assert stage({"cam-1": {"version": 99}})._stored_state("cam-1") is None
