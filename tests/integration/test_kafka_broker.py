"""The embedded Apache Kafka (KRaft) and the production (``kafka``) client profile, on the real broker.

Most tests use the session's broker (tests/fixtures/broker.py: the embedded Apache Kafka by
default); the launcher tests start their own nodes, the cluster test a quorum of three.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource

from framestream.services import kafka as kafka_module
from framestream.services.broker import BrokerPortInUse
from framestream.services.kafka import LocalKafka, LocalKafkaCluster, fetch_cluster_metadata, kafka_unavailable_reason
from framestream.services.probes import port_is_free
from framestream.settings import BrokerProfile, KafkaSettings
from streams.kafka_config import MAX_MESSAGE_BYTES, consumer_config, faust_broker_settings, producer_config
from streams.topics import TopicMismatchError, TopicNames, create_deployment_topics, create_topics, delete_topics
from tests.fixtures.broker import BrokerEndpoint

pytestmark = pytest.mark.integration

needs_kafka = pytest.mark.skipif(kafka_unavailable_reason() is not None, reason=str(kafka_unavailable_reason()))


@pytest.fixture
def on_kafka(kafka_settings: KafkaSettings) -> KafkaSettings:
    if kafka_settings.profile is not BrokerProfile.KAFKA:
        pytest.skip("the session's broker is Tansu: checks of the kafka profile need Apache Kafka")
    return kafka_settings


def topic_config(bootstrap_servers: str, topic: str) -> dict[str, str]:
    """The topic's effective configuration, as the broker describes it."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def produce(kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]], **overrides: object) -> Producer:
    producer = Producer({**producer_config(kafka, "test"), **overrides})
    for key, value in records:
        producer.produce(topic, key=key, value=value, headers=[("fs-test", value)])
    assert producer.flush(30) == 0
    return producer


def read_from_start(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:6]}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value())
    finally:
        consumer.close()
    return values


# -- the launcher -------------------------------------------------------------------------


@needs_kafka
def test_one_node_starts_refuses_a_taken_port_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    with LocalKafka(tmp_path / "a") as kafka:
        metadata = fetch_cluster_metadata(kafka.bootstrap_servers, timeout_s=5)
        assert [(b.id, b.port) for b in metadata.brokers.values()] == [(1, kafka.port)]
        node = kafka.node(0)
        assert "Kafka Server started" in node.log_path.read_text()
        # Our probe refuses a taken port before any JVM starts...
        with pytest.raises(BrokerPortInUse, match=f"127.0.0.1:{kafka.port} is already in use"):
            LocalKafka(tmp_path / "b", port=kafka.port).start()
        # ...and a port taken after the probe is recognised from the JVM's bind failure.
        with pytest.raises(BrokerPortInUse, match="could not bind"):
            LocalKafka(tmp_path / "c", port=kafka.port, probe_ports=False).start()
        assert node.running
    assert not node.running and node.pid is not None
    assert port_is_free("127.0.0.1", node.ports.broker) and port_is_free("127.0.0.1", node.ports.controller)
    kafka.stop()  # idempotent


@needs_kafka
def test_a_cluster_id_starting_with_a_dash_is_formatted_and_served(tmp_path: Path) -> None:
    """One random id in 64 starts with "-"; the storage tool must not take it for an option."""
    dashed = "-" + kafka_module.new_cluster_id()[1:]
    with LocalKafka(tmp_path, cluster_id=dashed) as kafka:
        assert fetch_cluster_metadata(kafka.bootstrap_servers, timeout_s=5).cluster_id == dashed


@needs_kafka
def test_a_node_pauses_and_keeps_its_records_through_a_crash_and_restart(tmp_path: Path) -> None:
    with LocalKafka(tmp_path) as kafka:
        settings = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix="kept.", partitions=1)
        topic = TopicNames(settings.topic_prefix).frames
        create_topics(kafka.bootstrap_servers, [topic], partitions=1, retention_ms=3_600_000)
        produce(settings, topic, [(b"cam", b"%d" % i) for i in range(5)])
        node = kafka.node(0)
        node.pause()  # SIGSTOP: a frozen broker answers nothing
        with pytest.raises(KafkaException):
            fetch_cluster_metadata(kafka.bootstrap_servers, timeout_s=2)
        node.resume()
        assert fetch_cluster_metadata(kafka.bootstrap_servers, timeout_s=10).brokers
        node.kill()  # kill -9; the log dir stays
        assert not node.running
        kafka.restart(0)
        assert sorted(read_from_start(settings, topic, 5)) == [b"%d" % i for i in range(5)]


def test_a_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BrokerPortInUse, match=f"127.0.0.1:{port} is already in use"):
            LocalKafka(tmp_path, controller_port=port).start()


# -- topics -------------------------------------------------------------------------------


def test_create_topics_is_idempotent_and_refuses_another_partition_count(kafka_broker: BrokerEndpoint) -> None:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:12]}.")
    servers, rf = kafka_broker.bootstrap_servers, kafka_broker.replication_factor
    try:
        created = create_topics(servers, names, partitions=3, retention_ms=3_600_000, replication_factor=rf)
        again = create_topics(servers, names, partitions=3, retention_ms=3_600_000, replication_factor=rf)
        assert created == again == names.all()
        metadata = fetch_cluster_metadata(servers, timeout_s=5)
        assert {name: len(metadata.topics[name].partitions) for name in names.all()} == dict.fromkeys(names.all(), 3)
        with pytest.raises(TopicMismatchError, match=rf"{names.frames}' already exists with 3 partitions, expected 5"):
            create_topics(servers, [names.frames], partitions=5, retention_ms=3_600_000, replication_factor=rf)
    finally:
        delete_topics(servers, names.all())


def test_deployment_topics_carry_retention_size_limit_and_a_compacted_changelog(on_kafka: KafkaSettings) -> None:
    topics = TopicNames(on_kafka.topic_prefix)
    create_deployment_topics(on_kafka)
    try:
        frames = topic_config(on_kafka.bootstrap_servers, topics.frames)
        changelog = topic_config(on_kafka.bootstrap_servers, topics.cooldowns_changelog)
        tracker_changelog = topic_config(on_kafka.bootstrap_servers, topics.tracker_changelog)
    finally:
        delete_topics(on_kafka.bootstrap_servers, [topics.cooldowns_changelog, topics.tracker_changelog])
    assert frames["retention.ms"] == str(on_kafka.retention_ms)
    assert frames["cleanup.policy"] == "delete"
    assert int(frames["max.message.bytes"]) == MAX_MESSAGE_BYTES > 1_000_000  # librdkafka's largest record
    assert changelog["cleanup.policy"] == "compact" and changelog["retention.ms"] == "-1"
    assert tracker_changelog["cleanup.policy"] == "compact" and tracker_changelog["retention.ms"] == "-1"
    assert frames["min.insync.replicas"] == str(min(2, on_kafka.replication_factor))


def test_a_frame_of_the_largest_size_the_producer_allows_is_accepted(on_kafka: KafkaSettings) -> None:
    topics = TopicNames(on_kafka.topic_prefix)
    frame = bytes(range(256)) * (990_000 // 256)  # under librdkafka's 1,000,000 with key and batch overhead
    producer = Producer(producer_config(on_kafka, "large"))
    producer.produce(topics.frames, key=b"cam", value=frame)
    assert producer.flush(30) == 0
    assert read_from_start(on_kafka, topics.frames, 1) == [frame]


# -- the kafka client profile -------------------------------------------------------------


def test_the_producer_is_idempotent_with_acks_all_and_gets_a_producer_id(on_kafka: KafkaSettings) -> None:
    topics = TopicNames(on_kafka.topic_prefix)
    config = producer_config(on_kafka, "ingest")
    assert config["acks"] == "all" and config["enable.idempotence"] is True
    assert "max.in.flight.requests.per.connection" not in config  # idempotence keeps order with 5 in flight
    stats: list[dict] = []
    statistics = {"statistics.interval.ms": 100, "stats_cb": lambda text: stats.append(json.loads(text))}
    producer = produce(on_kafka, topics.frames, [(b"cam", b"%d" % i) for i in range(20)], **statistics)
    deadline = time.monotonic() + 10
    while not any(s.get("eos", {}).get("producer_id", -1) >= 0 for s in stats) and time.monotonic() < deadline:
        producer.poll(0.2)
    eos = next(s["eos"] for s in reversed(stats) if s.get("eos", {}).get("producer_id", -1) >= 0)
    assert eos["idemp_state"] == "Assigned"  # the broker handed out a producer id: sequence numbers dedupe retries
    assert len(read_from_start(on_kafka, topics.frames, 20)) == 20


def test_round_trip_keeps_order_per_key_and_headers_and_a_group_joins_at_once(on_kafka: KafkaSettings) -> None:
    topics = TopicNames(on_kafka.topic_prefix)
    records = [(f"cam-{i % 4}".encode(), f"frame-{i}".encode()) for i in range(40)]
    produce(on_kafka, topics.frames, records)
    group = f"g-{uuid.uuid4().hex}"
    config = consumer_config(on_kafka, group)
    assert "session.timeout.ms" not in config  # librdkafka's 45 s default: Tansu's 6 s workaround is off here
    consumer = Consumer(config)
    subscribed = time.monotonic()
    consumer.subscribe([topics.frames])
    received, first_at = [], None
    try:
        while len(received) < len(records) and time.monotonic() - subscribed < 60:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            first_at = first_at or time.monotonic()
            received.append((message.key(), message.value(), message.headers()))
        consumer.commit(asynchronous=False)
        admin = AdminClient({"bootstrap.servers": on_kafka.bootstrap_servers})
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
        committed = consumer.committed([TopicPartition(topics.frames, p) for p in range(on_kafka.partitions)], 10)
    finally:
        consumer.close()
    assert sorted(received) == sorted((key, value, [("fs-test", value)]) for key, value in records)
    for camera in {key for key, _ in records}:
        assert [v for k, v, _ in received if k == camera] == [v for k, v in records if k == camera]
    assert described.state == ConsumerGroupState.STABLE and len(described.members) == 1
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == len(records)
    # group.initial.rebalance.delay.ms=0 on the embedded broker: no 3 s wait for more members.
    assert (first_at or time.monotonic()) - subscribed < 10


def test_the_high_watermark_counts_every_batched_record(on_kafka: KafkaSettings) -> None:
    topics = TopicNames(on_kafka.topic_prefix)
    producer = Producer({**producer_config(on_kafka, "batched"), "linger.ms": 100})
    for i in range(10):
        producer.produce(topics.detections, value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer(consumer_config(on_kafka, "watermarks"))
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topics.detections, 0), timeout=10) == (0, 10)
    finally:
        consumer.close()


def test_keys_map_to_the_partitions_faust_uses(kafka_settings: KafkaSettings, topics: TopicNames) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    producer = Producer(producer_config(kafka_settings, "test"))
    placed: dict[bytes, int] = {}
    for key in (f"camera-{i}".encode() for i in range(12)):
        producer.produce(
            topics.frames,
            key=key,
            value=b"x",
            on_delivery=lambda error, message: placed.__setitem__(message.key(), message.partition()),
        )
    assert producer.flush(30) == 0
    partitioner = DefaultPartitioner()
    all_partitions = list(range(4))
    assert placed == {key: partitioner(key, all_partitions, all_partitions) for key in placed}
    assert len(set(placed.values())) > 1


def test_faust_uses_acks_all_and_its_client_speaks_to_the_broker(on_kafka: KafkaSettings) -> None:
    """aiokafka (faust's client) against this broker version: produce with acks=-1, join a
    group, commit. Kafka 4.x removed old protocol versions (KIP-896)."""
    import faust
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    settings = faust_broker_settings(on_kafka)
    assert settings["producer_acks"] == -1
    assert "producer_max_batch_size" not in settings and "broker_session_timeout" not in settings
    app = faust.App(f"acks-check-{uuid.uuid4().hex[:6]}", **settings)
    assert app.conf.producer_acks == -1
    assert app.conf.broker_session_timeout == 60.0  # faust's default; within the broker's 6 s..30 min range

    topic, servers = TopicNames(on_kafka.topic_prefix).alerts, on_kafka.bootstrap_servers

    async def round_trip() -> tuple[list[bytes], int]:
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks=-1)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, b"alert-%d" % i, key=b"cam")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=servers,
            group_id=f"faustlike-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=int(app.conf.broker_session_timeout * 1000),
        )
        await consumer.start()
        try:
            values: list[bytes] = []
            async with asyncio.timeout(60):
                while len(values) < 5:
                    batch = await consumer.getmany(timeout_ms=500)
                    values += [record.value for records in batch.values() for record in records]
            await consumer.commit()
            partitions = consumer.assignment()
            committed = sum([await consumer.committed(tp) or 0 for tp in partitions])
        finally:
            await consumer.stop()
        return values, committed

    values, committed = asyncio.run(round_trip())
    assert values == [b"alert-%d" % i for i in range(5)] and committed == 5


# -- three brokers ------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafkaCluster]:
    if (reason := kafka_unavailable_reason()) is not None:
        pytest.skip(reason)
    with LocalKafkaCluster(tmp_path) as started:
        yield started


def test_a_three_broker_cluster_keeps_acks_all_writes_through_a_leader_crash(cluster: LocalKafkaCluster) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=cluster.bootstrap_servers,
        profile=BrokerProfile.KAFKA,
        partitions=4,
        replication_factor=3,
        topic_prefix="ha.",
    )
    topics = TopicNames(kafka.topic_prefix)
    create_deployment_topics(kafka)
    metadata = fetch_cluster_metadata(cluster.bootstrap_servers, timeout_s=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert all(len(p.replicas) == 3 for p in metadata.topics[topics.frames].partitions.values())
    assert topic_config(cluster.bootstrap_servers, topics.frames)["min.insync.replicas"] == "2"

    delivered: list[bytes] = []
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: object) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message.value())  # type: ignore[attr-defined]

    producer = Producer({**producer_config(kafka, "ha"), "on_delivery": on_delivery})
    for i in range(50):
        producer.produce(topics.frames, key=b"cam", value=b"before-%d" % i)
    assert producer.flush(30) == 0
    leader = cluster.leader_of(topics.frames, 0)
    cluster.node(leader).kill()  # kill -9: no controlled shutdown
    for i in range(50):
        producer.produce(topics.frames, key=b"cam", value=b"after-%d" % i)
    assert producer.flush(90) == 0
    assert cluster.wait_for_leader(topics.frames, 0, not_index=leader) != leader
    cluster.restart(leader)
    assert sorted(fetch_cluster_metadata(cluster.bootstrap_servers, timeout_s=10).brokers) == [1, 2, 3]
    assert errors == []
    expected = [b"before-%d" % i for i in range(50)] + [b"after-%d" % i for i in range(50)]
    assert delivered == expected  # one key, one partition: in order, nothing doubled (idempotent producer)
    assert read_from_start(kafka, topics.frames, 100) == expected
