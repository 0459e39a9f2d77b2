"""Replaying the same Kafka records twice leaves identical counts in ClickHouse.

The records are produced once, persisted by the real ``framestream worker --stages persist``,
then produced again (as an upstream stage re-producing after a crash would) and persisted by
a restarted worker. Every table, with and without FINAL, and every rollup must count the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framestream.settings import KafkaSettings
from schemas import DeadLetter
from streams.topics import TopicNames
from tests.factories import capture_time, make_alert, make_dead_letter, make_detection, make_frame_detections
from tests.integration.workers import FrameProducer, WorkerProcess, WorkerStore, worker_env

pytestmark = pytest.mark.integration

CAMERAS = ["cam-a", "cam-b", "cam-c"]
FRAMES_PER_CAMERA = 20
OBJECTS_PER_CAMERA = sum(seq % 3 for seq in range(FRAMES_PER_CAMERA))  # frame seq carries seq % 3 objects
COUNT_QUERIES = {
    "frames": "SELECT count() FROM frames",
    "frames_final": "SELECT count() FROM frames FINAL",
    "detections": "SELECT count() FROM detections",
    "detections_final": "SELECT count() FROM detections FINAL",
    "alerts": "SELECT count() FROM alerts",
    "dead_letters": "SELECT count() FROM dead_letters",
    "per_minute_detections": "SELECT sum(n) FROM (SELECT uniqExactMerge(detections) AS n "
    "FROM detections_per_minute GROUP BY camera_id, class_name, minute)",
    "per_class": "SELECT groupArray((class_name, n)) FROM (SELECT class_name, count() AS n "
    "FROM detections GROUP BY class_name ORDER BY class_name)",
}


def messages() -> list[tuple[str, bytes, bytes]]:
    """(topic kind, key, JSON value) for frames with detections, alerts and dead letters."""
    records = []
    for camera in CAMERAS:
        for seq in range(FRAMES_PER_CAMERA):
            detections = [
                make_detection("person", 0.9, (10, 10, 50, 90)),
                make_detection("car", 0.6, (60, 20, 200, 90)),
            ]
            frame = make_frame_detections(camera, seq, detections[: seq % 3], captured_at=capture_time(seq))
            records.append(("detections", camera.encode(), frame.model_dump_json().encode()))
        alert = make_alert("person-seen", camera, 1, captured_at=capture_time(1))
        records.append(("alerts", camera.encode(), alert.model_dump_json().encode()))
    letter: DeadLetter = make_dead_letter(source_partition=1, source_offset=42)
    records.append(("deadletter", b"cam-z", letter.model_dump_json().encode()))
    return records


def produce(kafka: KafkaSettings, topics: TopicNames) -> None:
    producer = FrameProducer(kafka)
    for kind, key, value in messages():
        producer.raw(getattr(topics, kind), key, value, [])
    producer.flush()


def counts(store: WorkerStore) -> dict[str, object]:
    client = store.connect()
    try:
        return {name: client.query(sql).result_rows[0][0] for name, sql in COUNT_QUERIES.items()}
    finally:
        client.close()


def persist_everything(worker: WorkerProcess, at_least: dict[str, int]) -> None:
    worker.start()
    try:
        for kind, count in at_least.items():
            worker.wait_for_metric("framestream_persisted_messages_total", count, 120, kind=kind)
        assert worker.terminate() == 0, worker.log_tail()
    finally:
        worker.kill()


def test_replaying_the_same_records_leaves_identical_counts(
    kafka_settings: KafkaSettings, topics: TopicNames, store: WorkerStore, tmp_path: Path
) -> None:
    env = worker_env(
        kafka_settings,
        triton_url="",
        data_dir=tmp_path / "data",
        rules_file=tmp_path / "unused.yaml",
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
    )
    worker = WorkerProcess("persist", "persist", env, tmp_path)
    frames = len(CAMERAS) * FRAMES_PER_CAMERA
    expected = {"detections": frames, "alerts": len(CAMERAS), "deadletters": 1}

    produce(kafka_settings, topics)
    persist_everything(worker, expected)
    first = counts(store)
    assert first["frames"] == first["frames_final"] == frames
    assert (
        first["detections"]
        == first["detections_final"]
        == first["per_minute_detections"]
        == len(CAMERAS) * OBJECTS_PER_CAMERA
    )
    assert first["alerts"] == len(CAMERAS) and first["dead_letters"] == 1

    produce(kafka_settings, topics)  # the same records, a second time
    # The restarted worker resumes after its committed offsets, so it reads exactly the replayed copies.
    persist_everything(worker, expected)
    assert counts(store) == first
