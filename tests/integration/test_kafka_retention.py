"""Retention on Apache Kafka while the pipeline runs: the broker deletes old frame segments and
the log-start offset of every frames partition moves above 0, while a detect+persist worker
keeps taking new frames to ClickHouse, each once, with no errors and no dead letters.

The broker is a single-node ``LocalKafka`` of this module's own, checking retention every
second (``log.retention.check.interval.ms``, a broker setting); the frames topic gets small
segments (1 MiB, Kafka's smallest, or 2 s) and a 20 s retention. A closed segment goes once
its newest record is older than the retention; the active one never does. The feed waits
while the pipeline is behind, so every frame is read long before it expires: the test proves
retention runs beside the pipeline, not that a lagging consumer loses records.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from framestream.services.kafka import LocalKafka, kafka_unavailable_reason
from framestream.settings import BrokerProfile, KafkaSettings
from streams.topics import TopicNames, create_deployment_topics, create_topics
from tests.integration.workers import (
    FrameFeed,
    WorkerProcess,
    WorkerStore,
    end_offsets,
    low_watermarks,
    read_topic,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2
CAMERAS = {"cam-dog": "dog", "cam-horses": "horses"}  # camera i -> partition i; ~150 KB photos
RETENTION_MS = 20_000
SEGMENT_BYTES = 1024 * 1024  # the smallest segment.bytes Kafka 4.x accepts
SEGMENT_MS = 2_000
RETENTION_CHECK_MS = 1_000
FRAMES_TOPIC_CONFIG = {"segment.bytes": str(SEGMENT_BYTES), "segment.ms": str(SEGMENT_MS)}
ROUND_S = 0.5  # a frame of each camera every half second, while the pipeline keeps up
MAX_ROUNDS = 400
MAX_BACKLOG = 3 * len(CAMERAS)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    if (reason := kafka_unavailable_reason()) is not None:
        pytest.skip(reason)
    broker_overrides = {"log.retention.check.interval.ms": str(RETENTION_CHECK_MS)}
    with LocalKafka(
        tmp_path_factory.mktemp("kafka-retention"), partitions=PARTITIONS, extra_properties=broker_overrides
    ) as started:
        yield started


@pytest.fixture
def kafka(broker: LocalKafka) -> KafkaSettings:
    """The frames topic with small segments and a short retention, then the rest as a deployment creates them."""
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        profile=BrokerProfile.KAFKA,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=PARTITIONS,
        retention_ms=3_600_000,
    )
    frames = TopicNames(settings.topic_prefix).frames
    create_topics(
        settings.bootstrap_servers,
        [frames],
        partitions=PARTITIONS,
        retention_ms=RETENTION_MS,
        extra_config=FRAMES_TOPIC_CONFIG,
    )
    create_deployment_topics(settings)  # the frames topic exists: kept as it is
    return settings


@pytest.fixture
def worker(kafka: KafkaSettings, triton_url: str, store: WorkerStore, tmp_path: Path) -> Iterator[WorkerProcess]:
    env = worker_env(
        kafka,
        triton_url=triton_url,
        data_dir=tmp_path / "data",
        rules_file=tmp_path / "unused.yaml",
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
    )
    process = WorkerProcess("detect-persist", "detect,persist", env, tmp_path)
    yield process
    process.kill()


def topic_config(bootstrap_servers: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def test_retention_deletes_old_frame_segments_while_the_pipeline_runs(
    kafka: KafkaSettings, worker: WorkerProcess, store: WorkerStore
) -> None:
    topics = TopicNames(kafka.topic_prefix)
    config = topic_config(kafka.bootstrap_servers, topics.frames)
    assert (config["retention.ms"], config["segment.bytes"], config["segment.ms"], config["cleanup.policy"]) == (
        str(RETENTION_MS),
        str(SEGMENT_BYTES),
        str(SEGMENT_MS),
        "delete",
    )
    worker.start()
    worker.wait_for_metric("framestream_assigned_partitions", PARTITIONS, 90, topic=topics.frames)

    def stored() -> float:
        return worker.metric("framestream_sink_rows_inserted_total", table="frames")

    feed = FrameFeed(
        kafka,
        topics.frames,
        CAMERAS,
        spacing_s=0.5,
        round_s=ROUND_S,
        max_rounds=MAX_ROUNDS,
        max_backlog=MAX_BACKLOG,
        stored=stored,
        client_id="retention-frames",
    )
    history: list[tuple[float, dict[int, int], float]] = []  # (seconds, log-start offsets, frames stored)
    began = time.monotonic()

    def log_start_moved(beyond: dict[int, int]) -> bool:
        assert worker.alive, f"the worker died:\n{worker.log_tail()}"
        low = low_watermarks(kafka, topics.frames, PARTITIONS)
        history.append((time.monotonic() - began, low, stored()))
        return all(low[p] > beyond[p] for p in range(PARTITIONS))

    feed.start()
    try:
        # The first deletion: a closed segment's newest frame is RETENTION_MS old, plus a check.
        wait_until(
            lambda: log_start_moved(dict.fromkeys(range(PARTITIONS), 0)),
            RETENTION_MS / 1000 + 90,
            "retention to delete the first frame segments of every partition",
            interval_s=1.0,
        )
        first = history[-1]
        # And it keeps going while the pipeline does: the log start moves again, frames still arrive.
        wait_until(
            lambda: log_start_moved(first[1]) and stored() >= first[2] + 4 * len(CAMERAS),
            60,
            "a second deletion while new frames reach ClickHouse",
            interval_s=1.0,
        )
    finally:
        undelivered = feed.finish(60)
        print(
            "log-start offsets (s: {partition: offset}, frames stored): "
            + "; ".join(f"{at:.0f}s {low} {count:.0f}" for at, low, count in history[-12:])
        )
    assert undelivered == 0 and feed.failed == [], f"{undelivered} undelivered, failed: {feed.failed[:5]}"
    assert sorted(feed.delivered) == sorted(feed.produced)
    assert sum(end_offsets(kafka, topics.frames, PARTITIONS).values()) == len(feed.produced)

    worker.wait_for_metric("framestream_sink_rows_inserted_total", len(feed.produced), 120, table="frames")
    low = low_watermarks(kafka, topics.frames, PARTITIONS)
    assert worker.alive, worker.log_tail()
    assert worker.metric("framestream_dead_letters_total") == 0, "dead letters"
    assert worker.metric("framestream_frames_total", outcome="deadletter") == 0
    assert worker.terminate() == 0, worker.log_tail()
    print(
        f"{feed.rounds} rounds, {len(feed.produced)} frames; log-start offsets at the end {low}, "
        f"end offsets {end_offsets(kafka, topics.frames, PARTITIONS)}"
    )

    assert read_topic(kafka, topics.deadletter, PARTITIONS, idle_s=2.0) == []
    client = store.connect()
    try:
        count, unique = client.query("SELECT count(), uniqExact(event_id) FROM frames").result_rows[0]
        produced = len(feed.produced)
        assert count == unique == produced, f"count {count}, uniqExact {unique}, produced {produced}"
        stored_ids = {row[0] for row in client.query("SELECT event_id FROM frames").result_rows}
        assert stored_ids == set(feed.produced), f"missing {sorted(set(feed.produced) - stored_ids)[:5]}"
        assert client.query("SELECT count() FROM dead_letters").result_rows[0][0] == 0
    finally:
        client.close()
    # Frames the broker no longer holds were stored before they went: retention took them after the pipeline did.
    assert sum(low.values()) > 0
