"""Broker failover on a three-node Apache Kafka (KRaft) cluster: replication factor 3,
``min.insync.replicas=2``, the production topic creation and client settings.

The pipeline runs as separate worker processes (detect, alert, persist) against the real
tritonserver and chDB while an acks=all, idempotent producer feeds frames of four cameras.
Mid-stream the broker leading the frames partitions is killed with SIGKILL (no controlled
shutdown), the pipeline has to keep going on the other two, the broker is restarted, allowed
back into every ISR and given back its preferred leaderships; then the broker leading the
frames partitions at that point (another one) is killed and restarted the same way. One
broker down at a time, so every acks=all write still has its two in-sync replicas.

Afterwards: every frame is in ClickHouse exactly once, the alert ids on the alerts topic are
exactly the ones the rules give for the frames produced, nothing went to the dead letters,
and every frame the producer was told was delivered made it downstream.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from framestream.services.kafka import LocalKafkaCluster, fetch_cluster_metadata, kafka_unavailable_reason
from framestream.settings import BrokerProfile, KafkaSettings
from schemas import Alert, FrameMeta
from streams.app import Stage, app_id
from streams.kafka_config import consumer_config
from streams.topics import TopicNames, create_deployment_topics
from tests.integration.workers import (
    FrameFeed,
    WorkerProcess,
    WorkerStore,
    committed_offsets,
    end_offsets,
    read_topic,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# As in test_recovery.py: capture times 0.5 s apart, so the 2 s and 3 s cooldowns make every
# 4th (person) and every 6th (dog) frame of a camera alert.
SPACING_S = 0.5
RULES = """
rules:
  - id: person-seen
    description: Person seen
    classes: [person]
    min_score: 0.35
    cooldown_s: 2
  - id: dog-seen
    description: Dog seen
    classes: [dog]
    min_score: 0.5
    cooldown_s: 3
"""
CAMERAS = {"cam-a": "person", "cam-b": "dog", "cam-c": "kite", "cam-d": "horses"}
PARTITIONS = 4  # camera i -> partition i: every frames partition carries a camera
# The producer sends a round (a frame of every camera) every ROUND_S for as long as the
# failover sequence lasts, at most MAX_ROUNDS, and waits while more than MAX_BACKLOG frames
# are not yet in ClickHouse: on two shared cores Triton detects a few frames a second, and an
# unbounded backlog would only make the test longer. The feed is never paused by the outages
# themselves (the backlog is free when a broker dies): frames are in flight when it happens.
ROUND_S = 1.0
MAX_ROUNDS = 400
MAX_BACKLOG = 4 * len(CAMERAS)
# Frames the pipeline must store while a broker is down (per outage) and after both restarts.
PROGRESS_FRAMES = 2 * len(CAMERAS)


def expected_alerts(per_camera: int) -> set[str]:
    """person.jpg has a person and a dog, dog.jpg a dog, kite.jpg people, horses.jpg neither."""
    seqs = range(per_camera)
    person = {f"person-seen:{camera}:{seq}" for camera in ("cam-a", "cam-c") for seq in seqs if seq % 4 == 0}
    dog = {f"dog-seen:{camera}:{seq}" for camera in ("cam-a", "cam-b") for seq in seqs if seq % 6 == 0}
    return person | dog


# -- the cluster and the pipeline ---------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """Three KRaft nodes of this module's own: the test kills and restarts them."""
    if (reason := kafka_unavailable_reason()) is not None:
        pytest.skip(reason)
    with LocalKafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), partitions=PARTITIONS) as started:
        yield started


@pytest.fixture
def kafka(cluster: LocalKafkaCluster) -> KafkaSettings:
    """The production topics (replication factor 3, min ISR 2 from the brokers) under a fresh prefix."""
    settings = KafkaSettings(
        bootstrap_servers=cluster.bootstrap_servers,
        profile=BrokerProfile.KAFKA,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}.",
        partitions=PARTITIONS,
        retention_ms=3_600_000,
        replication_factor=3,
    )
    create_deployment_topics(settings)
    return settings


@pytest.fixture
def workers(
    kafka: KafkaSettings, triton_url: str, store: WorkerStore, tmp_path: Path
) -> Iterator[dict[str, WorkerProcess]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = worker_env(
        kafka,
        triton_url=triton_url,
        data_dir=tmp_path / "data",
        rules_file=rules,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
        FRAMESTREAM_WORKER_DETECT_MAX_BATCH="4",
    )
    processes = {stage: WorkerProcess(stage, stage, env, tmp_path) for stage in ("detect", "alert", "persist")}
    yield processes
    for process in processes.values():
        process.kill()


# -- what the cluster says ----------------------------------------------------------------


def frames_leaders(cluster: LocalKafkaCluster, topic: str) -> dict[int, int]:
    """Frames partition -> index of the node leading it (-1: none now)."""
    metadata = fetch_cluster_metadata(running_servers(cluster), timeout_s=10)
    index_of = {node.node_id: index for index, node in enumerate(cluster.nodes)}
    return {p: index_of.get(meta.leader, -1) for p, meta in metadata.topics[topic].partitions.items()}


def busiest_leader(cluster: LocalKafkaCluster, topic: str, *, other_than: int | None = None) -> int:
    """The node leading the most frames partitions (ties: the lowest partition's leader)."""
    leaders = frames_leaders(cluster, topic)
    counts = Counter(index for index in leaders.values() if index not in (-1, other_than))
    assert counts, f"no running node leads a partition of {topic}: {leaders}"
    top = max(counts.values())
    return next(index for _, index in sorted(leaders.items()) if counts.get(index) == top)


def running_servers(cluster: LocalKafkaCluster) -> str:
    return ",".join(node.bootstrap_server for node in cluster.nodes if node.running)


def wait_until_all_in_sync(cluster: LocalKafkaCluster, timeout_s: float) -> None:
    """Until every partition of every topic (internal ones too) has all its replicas in its ISR:
    only then may the next broker go, or acks=all writes would be left with one in-sync replica."""
    lagging: list[str] = []

    def in_sync() -> bool:
        metadata = fetch_cluster_metadata(running_servers(cluster), timeout_s=10)
        lagging[:] = [
            f"{name}[{p}] isr={sorted(meta.isrs)} replicas={sorted(meta.replicas)}"
            for name, topic in metadata.topics.items()
            for p, meta in topic.partitions.items()
            if set(meta.isrs) != set(meta.replicas) or meta.leader < 0
        ]
        return not lagging

    try:
        wait_until(in_sync, timeout_s, "every replica back in sync", interval_s=1.0)
    except AssertionError as error:
        raise AssertionError(f"{error}; lagging: {lagging[:5]}") from None


def restore_preferred_leaders(cluster: LocalKafkaCluster, timeout_s: float) -> None:
    """Hand every partition back to its preferred replica, as an operator does after a restart
    (kafka-leader-election --election-type PREFERRED), and wait until metadata shows it.

    Without this the controller's own leader balancing moves leadership back to the restarted
    broker at a moment of its choosing: seen here a second after the node rejoined, between the
    test reading which broker leads the frames partitions and killing it, so the broker killed
    led nothing any more. With preferred leaders in place the balancer has nothing to move."""
    admin = AdminClient({"bootstrap.servers": running_servers(cluster), "log_level": 0})
    # No request_timeout/operation_timeout: confluent-kafka 2.16.1 raises SystemError on either.
    results = admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=60)
    refused = {
        f"{tp.topic}[{tp.partition}]": error
        for tp, error in results.items()
        if error is not None and error.args[0].code() != KafkaError.ELECTION_NOT_NEEDED
    }
    assert not refused, f"preferred leader election refused: {refused}"
    elsewhere: list[str] = []
    checks: list[bool] = []

    def preferred_everywhere() -> bool:
        metadata = fetch_cluster_metadata(running_servers(cluster), timeout_s=10)
        elsewhere[:] = [
            f"{name}[{p}] leader={meta.leader} replicas={meta.replicas}"
            for name, topic in metadata.topics.items()
            for p, meta in topic.partitions.items()
            if meta.replicas and meta.leader != meta.replicas[0]
        ]
        checks.append(not elsewhere)
        return checks[-2:] == [True, True]  # twice in a row: metadata of every broker has caught up

    try:
        wait_until(preferred_everywhere, timeout_s, "the preferred replicas to lead again", interval_s=1.0)
    except AssertionError as error:
        raise AssertionError(f"{error}; not yet: {elsewhere[:5]}") from None


def wait_for_group_to_commit_everything(kafka: KafkaSettings, topic: str, group_id: str, timeout_s: float) -> None:
    progress: dict[str, dict[int, int]] = {}

    def caught_up() -> bool:
        try:
            progress["committed"] = committed_offsets(kafka, group_id, topic, kafka.partitions)
            progress["end"] = end_offsets(kafka, topic, kafka.partitions)
        except KafkaException:  # e.g. NOT_COORDINATOR while the group's coordinator moved back: ask again
            return False
        # A partition no camera hashes to stays empty (end 0) and never gets a commit (-1).
        return all(progress["committed"][p] >= end for p, end in progress["end"].items() if end > 0)

    try:
        wait_until(caught_up, timeout_s, f"group {group_id} to commit all of {topic}", interval_s=1.0)
    except AssertionError as error:
        raise AssertionError(f"{error}: committed {progress.get('committed')}, end {progress.get('end')}") from None


# -- the test -----------------------------------------------------------------------------


def test_leader_crashes_one_at_a_time_lose_nothing_double_nothing_and_dead_letter_nothing(
    cluster: LocalKafkaCluster, kafka: KafkaSettings, workers: dict[str, WorkerProcess], store: WorkerStore
) -> None:
    topics = TopicNames(kafka.topic_prefix)
    timeline: list[tuple[str, float]] = []
    began = time.monotonic()

    def mark(what: str) -> None:
        timeline.append((what, time.monotonic() - began))

    try:
        run_failover(cluster, kafka, topics, workers, store, mark)
    finally:
        print("timeline: " + "; ".join(f"{at:.1f}s {what}" for what, at in timeline))


def run_failover(
    cluster: LocalKafkaCluster,
    kafka: KafkaSettings,
    topics: TopicNames,
    workers: dict[str, WorkerProcess],
    store: WorkerStore,
    mark: Callable[[str], None],
) -> None:
    detect, persist = workers["detect"], workers["persist"]
    for process in workers.values():
        process.start()
    detect.wait_for_metric("framestream_assigned_partitions", PARTITIONS, 90, topic=topics.frames)
    mark("workers up")

    def stored() -> float:
        return persist.metric("framestream_sink_rows_inserted_total", table="frames")

    feed = FrameFeed(
        kafka,
        topics.frames,
        CAMERAS,
        spacing_s=SPACING_S,
        round_s=ROUND_S,
        max_rounds=MAX_ROUNDS,
        max_backlog=MAX_BACKLOG,
        stored=stored,
        client_id="failover-frames",
    )
    feed.start()
    try:
        persist.wait_for_metric("framestream_sink_rows_inserted_total", PROGRESS_FRAMES, 120, table="frames")
        mark("frames reach ClickHouse")

        killed: list[int] = []
        for outage in (1, 2):
            # Let the pipeline catch up first, so the feed has room to keep sending through the
            # outage (it waits while MAX_BACKLOG frames are unstored, and a stalled pipeline would
            # otherwise hold it back just when frames should be in flight).
            feed.hold()
            wait_until(lambda: len(feed.produced) - stored() <= 0, 120, "the pipeline to catch up")
            feed.release()
            victim = busiest_leader(cluster, topics.frames, other_than=killed[-1] if killed else None)
            led = sorted(p for p, index in frames_leaders(cluster, topics.frames).items() if index == victim)
            cluster.node(victim).kill()  # kill -9: no controlled shutdown, leadership is taken from it
            sent_at_kill, killed_at = len(feed.produced), time.monotonic()
            killed.append(victim)
            mark(f"outage {outage}: node {cluster.node(victim).node_id} killed (led frames partitions {led})")
            for partition in led:
                cluster.wait_for_leader(topics.frames, partition, not_index=victim, timeout_s=60)
            # Mid-stream: frames went to those partitions while their leader was dead and no other
            # was elected yet (the controller fences a dead broker after 9 s); librdkafka held and
            # retried them. The checks below find each of them downstream, once.
            sent_leaderless = len(feed.produced) - sent_at_kill
            leaderless_s = time.monotonic() - killed_at
            assert sent_leaderless > 0, f"the feed sent nothing in the {leaderless_s:.1f}s without a leader"
            mark(f"outage {outage}: new leaders after {leaderless_s:.1f}s ({sent_leaderless} frames sent meanwhile)")
            # The pipeline goes on with a broker down: produce, consume, commit on the other two.
            persist.wait_for_metric(
                "framestream_sink_rows_inserted_total", stored() + PROGRESS_FRAMES, 120, table="frames"
            )
            mark(f"outage {outage}: {PROGRESS_FRAMES} more frames stored with a broker down")
            cluster.restart(victim)
            mark(f"outage {outage}: node restarted")
            wait_until_all_in_sync(cluster, 120)
            restore_preferred_leaders(cluster, 60)
            mark(f"outage {outage}: every replica in sync, preferred leaders back")
        assert killed[0] != killed[1], "the second outage takes another broker"
        persist.wait_for_metric("framestream_sink_rows_inserted_total", stored() + PROGRESS_FRAMES, 120, table="frames")
    finally:
        undelivered = feed.finish(120)
    mark(f"feed stopped: {feed.rounds} rounds, {len(feed.produced)} frames")

    # The producer retried through both failovers: everything it sent is reported delivered.
    assert undelivered == 0 and feed.failed == [], f"{undelivered} undelivered, failed: {feed.failed[:5]}"
    assert sorted(feed.delivered) == sorted(feed.produced), "each frame is reported delivered exactly once"
    # ...and kept, each once, by the brokers that survived and came back (no unclean election).
    on_the_log = Counter(frame_ids_on_the_log(kafka, topics.frames))
    lost = sorted(set(feed.delivered) - set(on_the_log))
    assert set(on_the_log) == set(feed.delivered), f"delivered, not on the log: {lost[:5]}"
    assert max(on_the_log.values()) == 1, "the idempotent producer's retries wrote no duplicate"

    alerts_wanted = expected_alerts(feed.rounds)
    persist.wait_for_metric("framestream_sink_rows_inserted_total", len(feed.delivered), 240, table="frames")
    wait_for_group_to_commit_everything(kafka, topics.detections, app_id(kafka.topic_prefix, [Stage.ALERT]), 120)
    persist.wait_for_metric("framestream_sink_rows_inserted_total", len(alerts_wanted), 60, table="alerts")
    mark("pipeline drained")
    for process in workers.values():
        assert process.alive, f"{process.name} died:\n{process.log_tail()}"
        assert process.metric("framestream_dead_letters_total") == 0, f"{process.name} dead-lettered records"
    retries = {process.name: process.metric("framestream_transient_retries_total") for process in workers.values()}
    for process in workers.values():
        assert process.terminate() == 0, process.log_tail()
    mark("workers stopped")

    check_alerts_topic(kafka, topics, alerts_wanted)
    assert read_topic(kafka, topics.deadletter, PARTITIONS, idle_s=2.0) == [], "the failover dead-lettered records"
    check_clickhouse(store, set(feed.delivered), alerts_wanted)
    mark("checked")
    print(f"transient retries by worker: {retries}")


def frame_ids_on_the_log(kafka: KafkaSettings, topic: str) -> list[str]:
    """The frame id (from the headers) of every record of the frames topic, up to its high watermarks."""
    ends = end_offsets(kafka, topic, PARTITIONS)
    consumer = Consumer(consumer_config(kafka, group_id=f"test-log-reader-{uuid.uuid4().hex[:6]}"))
    ids: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 60
        while any(positions[p] < end for p, end in ends.items()) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            ids.append(FrameMeta.from_headers(message.headers()).frame_id)
            positions[message.partition()] = message.offset() + 1
    finally:
        consumer.close()
    return ids


def check_alerts_topic(kafka: KafkaSettings, topics: TopicNames, wanted: set[str]) -> None:
    alerts = [Alert.model_validate_json(value) for _, value in read_topic(kafka, topics.alerts, PARTITIONS)]
    ids = Counter(alert.alert_id for alert in alerts)  # consumers deduplicate on alert_id
    missing, unexpected = sorted(wanted - set(ids)), sorted(set(ids) - wanted)
    assert not missing and not unexpected, f"missing {missing[:10]}, unexpected {unexpected[:10]}"
    print(
        f"alerts on the topic: {len(alerts)} records, {len(ids)} distinct, "
        f"{sum(count - 1 for count in ids.values())} resent"
    )


def check_clickhouse(store: WorkerStore, delivered: set[str], alerts_wanted: set[str]) -> None:
    client = store.connect()
    try:
        count, unique = client.query("SELECT count(), uniqExact(event_id) FROM frames").result_rows[0]
        assert count == unique == len(delivered), f"count {count}, uniqExact {unique}, delivered {len(delivered)}"
        stored = {row[0] for row in client.query("SELECT event_id FROM frames").result_rows}
        assert stored == delivered, f"delivered but not stored: {sorted(delivered - stored)[:5]}"
        for table, key in (("detections", "detection_id"), ("alerts", "alert_id")):
            rows, distinct = client.query(f"SELECT count(), uniqExact({key}) FROM {table}").result_rows[0]
            assert rows == distinct, f"{table}: {rows} rows for {distinct} ids"
        assert {row[0] for row in client.query("SELECT alert_id FROM alerts").result_rows} == alerts_wanted
        assert client.query("SELECT count() FROM dead_letters").result_rows[0][0] == 0
    finally:
        client.close()
