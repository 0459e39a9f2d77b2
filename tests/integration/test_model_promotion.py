"""Promotion under load: frames flowing through the real pipeline while ``framestream model promote``
and then ``framestream model rollback`` switch the served detector through Triton's model-control API.

Real services throughout, no mocks: the session's broker, a tritonserver of our own (explicit model
control) on a copy of triton_models/ (promotion rewrites the repository), ClickHouse (chDB here)
owned by the ``framestream worker`` running detect and persist, and the ``framestream model`` CLI as
a subprocess. Version 1 is NanoDet, version 2 the CenterNet-MobileNetV3 detector.

Shown: every frame is stored exactly once (count() without FINAL equals uniqExact(event_id) equals
frames produced), each frame names the version that processed it (1 or 2, consistent with when it
was detected relative to the switches, and both versions seen after each switch), no dead letters,
no errors, the worker exits cleanly.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from framestream.services.triton import LocalTriton
from framestream.settings import KafkaSettings
from streams.topics import TopicNames
from tests.integration.workers import FrameFeed, WorkerProcess, WorkerStore, wait_until, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CAMERAS = {"cam-a": "dog", "cam-b": "person", "cam-c": "horses", "cam-d": "kite"}
MAX_ROUNDS = 400  # the feed runs until the test stops it, some frames after the rollback


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[LocalTriton]:
    repository = tmp_path / "models"
    ignore = shutil.ignore_patterns("__pycache__", "registry.json")
    for name in ("detector", "nanodet"):
        shutil.copytree(REPO / "triton_models" / name, repository / name, ignore=ignore)
    assert (repository / "detector/2/detector.json").is_file(), "CenterNet is detector version 2"
    with LocalTriton(repository, REPO / ".venv-triton", log_file=tmp_path / "tritonserver.log") as server:
        yield server


def model_cli(triton: LocalTriton, *args: str) -> tuple[datetime, datetime, str]:
    started = datetime.now(UTC)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "framestream"), "model", *args]
        + ["--repository", str(triton.model_repository)]
        + ["--triton-url", triton.grpc_url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return started, datetime.now(UTC), done.stdout


def test_promote_and_rollback_under_load(
    kafka_settings: KafkaSettings, topics: TopicNames, triton: LocalTriton, store: WorkerStore, tmp_path: Path
) -> None:
    env = worker_env(
        kafka_settings,
        triton_url=triton.grpc_url,
        data_dir=tmp_path / "data",
        rules_file=REPO / "samples" / "rules.yaml",
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
    )
    worker = WorkerProcess("promotion", "detect,persist", env, tmp_path).start()

    def stored() -> float:
        return worker.metric("framestream_persisted_messages_total", kind="detections")

    feed = FrameFeed(
        kafka_settings,
        topics.frames,
        CAMERAS,
        spacing_s=0.5,
        round_s=0.25,
        max_rounds=MAX_ROUNDS,
        max_backlog=24,
        stored=stored,
    )
    try:
        feed.start()
        wait_until(lambda: stored() >= 30, 240, "frames stored before the promotion")
        promote_start, promote_end, out = model_cli(
            triton, "promote", "detector", "2", "--force", "--reason", "promotion-under-load test"
        )
        assert "version 2 serves" in out
        at_promotion = stored()
        wait_until(lambda: stored() >= at_promotion + 40, 240, "frames stored after the promotion")
        rollback_start, rollback_end, out = model_cli(triton, "rollback", "detector")
        assert "rolled back to version 1" in out
        at_rollback = stored()
        wait_until(lambda: stored() >= at_rollback + 30, 240, "frames stored after the rollback")
        assert feed.finish(60) == 0
        frames = len(feed.produced)
        assert len(feed.delivered) == frames and not feed.failed
        worker.wait_for_metric("framestream_persisted_messages_total", frames, 300, kind="detections")
        assert worker.alive
        assert worker.metric("framestream_frames_total", stage="detect", outcome="deadletter") == 0
        assert worker.metric("framestream_frames_total", stage="persist", outcome="deadletter") == 0
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()

    client = store.connect()
    try:
        count, unique = client.query("SELECT count(), uniqExact(event_id) FROM frames").result_rows[0]
        print(f"frames produced {frames}, stored rows {count}, distinct {unique}")
        assert count == unique == frames, "every frame processed and stored exactly once"
        expected = {f"{camera}:{seq}" for camera in CAMERAS for seq in range(feed.rounds)}
        stored_ids = {row[0] for row in client.query("SELECT event_id FROM frames").result_rows}
        assert stored_ids == expected
        rows = client.query(
            "SELECT event_id, model_name, model_version, detected_at, triton_ms FROM frames"
        ).result_rows
        assert {row[1] for row in rows} == {"detector"}
        # When each frame's request went to Triton: detected (just after the answer) less the round trip.
        sent: dict[str, list[datetime]] = {}
        for _, _, version, detected_at, triton_ms in rows:
            sent.setdefault(version, []).append(detected_at.replace(tzinfo=UTC) - timedelta(milliseconds=triton_ms))
        print({version: len(times) for version, times in sorted(sent.items())})
        print(
            f"promote {promote_start:%T.%f}..{promote_end:%T.%f}, rollback {rollback_start:%T.%f}..{rollback_end:%T.%f}"
        )
        assert set(sent) == {"1", "2"}
        # The version is the one that received the request: v2 only for requests sent while the
        # promotion ran or after it (until the rollback completed); v1 only for requests sent before
        # the promotion completed or once the rollback had begun. (In-flight requests finish on the
        # version they reached, so answers may arrive after a switch.) Slack: clock reads, 100 ms.
        slack = timedelta(milliseconds=100)
        assert all(promote_start - slack <= t <= rollback_end + slack for t in sent["2"]), sorted(sent["2"])
        assert all(t <= promote_end + slack or t >= rollback_start - slack for t in sent["1"]), sorted(sent["1"])
        assert any(t > promote_end for t in sent["2"]) and any(t > rollback_end for t in sent["1"])
        letters = client.query("SELECT count() FROM dead_letters").result_rows[0][0]
        assert letters == 0
    finally:
        client.close()
    log = (triton.model_repository / "detector/registry.json").read_text()
    assert '"reason": "promotion-under-load test"' in log and '"action": "rollback"' in log
