"""SIGTERM while the persist stage holds buffered rows: the worker flushes them, commits and exits 0.

The regression: the flush ran on an ``app.timer``, which ends at its first tick after SIGTERM,
while faust's shutdown waits (``Consumer.wait_empty``) for every event still held, and the
persist stage holds its events until their rows are flushed. A worker stopped between two
flushes therefore hung until its shutdown deadline and exited 3 without storing or committing
(seen once on CI, where chDB's INSERTs are slow enough to leave rows buffered at the signal).
Here the flush interval is a minute, so rows are always buffered when the signal comes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framestream.settings import KafkaSettings
from streams.topics import TopicNames
from tests.factories import make_detection, make_frame_detections
from tests.integration.workers import FrameProducer, WorkerProcess, WorkerStore, worker_env

pytestmark = pytest.mark.integration

RECORDS = 12


def test_sigterm_with_rows_buffered_stores_them_and_exits_cleanly(
    kafka_settings: KafkaSettings, topics: TopicNames, triton_url: str, store: WorkerStore, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    env = worker_env(
        kafka_settings,
        triton_url=triton_url,
        data_dir=tmp_path / "data",
        rules_file=rules,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        FRAMESTREAM_WORKER_PERSIST_MAX_INTERVAL_S="60",
        FRAMESTREAM_WORKER_SHUTDOWN_TIMEOUT_S="20",
    )
    worker = WorkerProcess("persist-stop", "persist", env, tmp_path).start()
    try:
        producer = FrameProducer(kafka_settings)
        for seq in range(RECORDS):
            frame = make_frame_detections("cam-stop", seq, [make_detection()])
            producer.raw(topics.detections, b"cam-stop", frame.model_dump_json().encode(), [])
        producer.flush()
        # Every record taken into the buffer (the take histogram counts them) and none flushed.
        worker.wait_for_metric("framestream_batch_size_sum", RECORDS, 120, stage="persist_take")
        assert worker.metric("framestream_persisted_messages_total", kind="detections") == 0
        # A hang ends at the 20 s shutdown deadline with exit 3 (and the stacks in the log).
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()

    client = store.connect()
    try:
        stored = client.query("SELECT count(), uniqExact(event_id) FROM frames WHERE camera_id = 'cam-stop'")
        assert stored.result_rows == [(RECORDS, RECORDS)]
    finally:
        client.close()
