"""Camera health from ingest to ClickHouse: the real persist worker stores every report once."""

from __future__ import annotations

from pathlib import Path

import pytest

from framestream.settings import REPO_ROOT, KafkaSettings
from streams.ingest.cameras import Camera, SyntheticSource
from streams.ingest.producer import CameraIngest
from streams.topics import TopicNames
from tests.integration.workers import WorkerProcess, WorkerStore, worker_env

pytestmark = pytest.mark.integration

FRAMES = 20


def test_health_reports_are_stored_by_the_persist_stage(
    kafka_settings: KafkaSettings, topics: TopicNames, store: WorkerStore, tmp_path: Path
) -> None:
    cameras = [
        Camera(id=camera_id, source=SyntheticSource(kind="synthetic", width=64, height=48), fps=10, max_frames=FRAMES)
        for camera_id in ("hall", "yard")
    ]
    progress = CameraIngest(cameras, kafka_settings, topics, health_every_s=0.5, run_id="p1").run()
    reports = sum(p.health_reports for p in progress.values())
    assert reports >= 2 * 2  # periodic ones over ~2 s, and a final one per camera

    env = worker_env(
        kafka_settings,
        triton_url="http://127.0.0.1:9",  # not used by the persist stage
        data_dir=tmp_path / "data",
        rules_file=REPO_ROOT / "samples" / "rules.yaml",
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
    )
    worker = WorkerProcess("persist", "persist", env, tmp_path)
    try:
        worker.start()
        worker.wait_for_metric("framestream_persisted_messages_total", reports, 120, kind="camera_health")
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()

    client = store.connect()
    try:
        rows = client.query(
            "SELECT camera_id, report_seq, trigger, state, frames_total, target_fps FROM camera_health FINAL "
            "ORDER BY camera_id, report_seq"
        ).result_rows
    finally:
        client.close()
    assert len(rows) == reports
    for camera in ("hall", "yard"):
        mine = [row for row in rows if row[0] == camera]
        assert [row[1] for row in mine] == list(range(len(mine)))
        assert (mine[-1][2], mine[-1][3], mine[-1][4], mine[-1][5]) == ("final", "online", FRAMES, 10.0)
