"""Ingest's camera health: reports become CameraHealth messages and the Prometheus gauges follow."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from processors.camera_health import FrameProduced, Reconnecting, StreamLost
from schemas.camera_health import CameraState, HealthTrigger
from streams.ingest.cameras import Camera, SyntheticSource
from streams.ingest.health import IngestHealth


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gauge(name: str, camera: str) -> float | None:
    return REGISTRY.get_sample_value(f"framestream_ingest_{name}", {"camera": camera})


def camera(camera_id: str, fps: float = 10.0) -> Camera:
    return Camera(id=camera_id, source=SyntheticSource(kind="synthetic"), fps=fps)


def test_an_outage_as_messages_and_metrics() -> None:
    clock = Clock(1_700_000_000.0)
    health = IngestHealth([camera("uh-door"), camera("uh-yard", 5)], "run-7", report_every_s=5, clock=clock)
    assert gauge("camera_target_fps", "uh-yard") == 5 and gauge("camera_online", "uh-door") == 1
    for _ in range(10):
        clock.now += 0.1
        assert health.observe("uh-door", FrameProduced(clock.now - 0.02, clock.now)) is None
    clock.now += 0.05
    lost = health.observe("uh-door", StreamLost())
    assert lost is not None and (lost.state, lost.trigger) == (CameraState.OFFLINE, HealthTrigger.STATE_CHANGE)
    assert lost.health_id == "uh-door:run-7:0" and lost.run_id == "run-7"
    assert lost.offline_since is not None
    assert lost.offline_since.timestamp() == pytest.approx(1_700_000_000.98)  # the last frame's capture
    assert gauge("camera_online", "uh-door") == 0
    health.observe("uh-door", Reconnecting())
    clock.now += 4
    # 5.05 s after the start: the yard camera never delivered, so it is offline now (door: already).
    assert [(m.camera_id, m.state) for m in health.tick()] == [("uh-yard", CameraState.OFFLINE)]
    assert gauge("camera_offline_seconds", "uh-door") == pytest.approx(4.07, abs=0.01)
    back = health.observe("uh-door", FrameProduced(clock.now, clock.now + 0.01))
    assert back is not None and back.state is CameraState.ONLINE and back.reconnects == 1
    assert back.outage_s == pytest.approx(4.07, abs=0.01)
    assert gauge("camera_last_outage_seconds", "uh-door") == pytest.approx(back.outage_s)
    assert gauge("camera_online", "uh-door") == 1 and gauge("camera_offline_seconds", "uh-door") == 0
    finals = health.stop()
    assert {m.camera_id: m.trigger for m in finals} == {"uh-door": HealthTrigger.FINAL, "uh-yard": HealthTrigger.FINAL}
    assert health.latest["uh-door"].frames_total == 11
    assert health.outages()["uh-door"] == [pytest.approx(4.07, abs=0.01)] and health.outages()["uh-yard"] == []
