"""Many cameras in one ingest process through a real broker: every camera's frames arrive, in
order, none lost or repeated, at the camera's rate, with a health report from every camera."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from framestream.settings import KafkaSettings
from schemas import CameraHealth, CameraState, FrameMeta, HealthTrigger
from streams.ingest.cameras import Camera, SyntheticSource
from streams.ingest.producer import CameraIngest
from streams.topics import TopicNames
from tests.integration.test_ingest import read_all, read_until_quiet

pytestmark = pytest.mark.integration

CAMERAS = 16
FRAMES = 30
FPS = 5.0


def test_sixteen_cameras_at_once_arrive_complete_and_in_order(
    kafka_settings: KafkaSettings, topics: TopicNames
) -> None:
    cameras = [
        Camera(
            id=f"cam-{index:02d}",
            source=SyntheticSource(kind="synthetic", width=320, height=240, seed=index),
            fps=FPS,
            max_frames=FRAMES,
        )
        for index in range(CAMERAS)
    ]
    progress = CameraIngest(cameras, kafka_settings, topics, first_seq=100, health_every_s=2.0, run_id="scale").run()
    assert all(p.frames_produced == FRAMES and p.error is None for p in progress.values()), progress

    # Records of one camera share a key, hence a partition: the consumer sees them in produce order.
    by_camera: dict[str, list[FrameMeta]] = defaultdict(list)
    for message in read_all(kafka_settings, topics.frames, expected=CAMERAS * FRAMES, timeout_s=60):
        meta = FrameMeta.from_headers(message.headers())
        assert message.key() == meta.camera_id.encode()
        by_camera[meta.camera_id].append(meta)
    assert sorted(by_camera) == [camera.id for camera in cameras]
    for camera_id, frames in by_camera.items():
        assert [meta.frame_seq for meta in frames] == list(range(100, 100 + FRAMES)), camera_id
        captured = [meta.captured_at.timestamp() for meta in frames]
        assert all(b > a for a, b in itertools.pairwise(captured)), camera_id
        rate = (len(captured) - 1) / (captured[-1] - captured[0])
        assert 0.8 * FPS <= rate <= 1.05 * FPS, (camera_id, rate)  # 16 cameras hold their rate

    finals = {}
    for message in read_until_quiet(kafka_settings, topics.camera_health):
        report = CameraHealth.model_validate_json(message.value())
        if report.trigger is HealthTrigger.FINAL:
            finals[report.camera_id] = report
    assert sorted(finals) == [camera.id for camera in cameras]
    assert all(r.frames_total == FRAMES and r.state is CameraState.ONLINE for r in finals.values())
