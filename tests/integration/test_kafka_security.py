"""The secured embedded stack on the real Apache Kafka: TLS + SCRAM-SHA-512 + ACLs.

One ``framestream services --secure`` process per module (the real command: it makes the CA,
certificates and passwords, formats and starts the broker, creates the topics, users and
ACLs, and writes one 0600 env file per role). Then, as the role principals from those env
files: who is refused at the door, the roles x topics x operations matrix against the table
the issue asks for (written out here, not derived from streams/acls.py), the whole pipeline
as separate role workers, and where the passwords are and are not.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from framestream.child_process import ChildProcess
from framestream.services.security import read_env_file
from framestream.settings import KafkaSettings
from streams.kafka_config import admin_config, consumer_config, producer_config
from streams.topics import TopicNames
from tests.integration.workers import (
    FrameProducer,
    WorkerProcess,
    camera_frames,
    wait_until,
    worker_env,
    worker_store,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = "sec."
PARTITIONS = 2
T = TopicNames(PREFIX)
TOPICS = {
    "frames": T.frames,
    "detections": T.detections,
    "alerts": T.alerts,
    "deadletter": T.deadletter,
    "tracks": T.tracks,
    "model_alerts": T.model_alerts,
    "alert_reviews": T.alert_reviews,
    "hard_examples": T.hard_examples,
    "camera_health": T.camera_health,
    "model_agreement": T.model_agreement,
    "cooldowns_changelog": T.cooldowns_changelog,
    "tracker_changelog": T.tracker_changelog,
}
ALL = set(TOPICS)
# role: (topics it reads, topics it writes, its consumer group or None) -- issue 14's table,
# plus the stages added since (track, monitor, bridge, review). Everything else is refused.
SPEC: dict[str, tuple[set[str], set[str], str | None]] = {
    "admin": (ALL, ALL, f"{PREFIX}anything"),
    "ingest": (set(), {"frames", "camera_health"}, None),
    "detect": ({"frames"}, {"detections", "deadletter"}, f"{PREFIX}framestream-detect"),
    "track": (
        {"detections", "tracker_changelog", "frames"},  # frames: a track alert's snapshot
        {"tracks", "tracker_changelog", "alerts", "deadletter"},  # alerts: track rules raise them
        f"{PREFIX}framestream-track",
    ),
    "alert": (
        {"detections", "cooldowns_changelog", "frames"},  # frames: an alert's snapshot (streams/snapshots.py)
        {"alerts", "cooldowns_changelog", "deadletter"},
        f"{PREFIX}framestream-alert",
    ),
    "persist": (
        ALL - {"frames", "cooldowns_changelog", "tracker_changelog"},
        {"deadletter"},
        f"{PREFIX}framestream-persist",
    ),
    "monitor": (
        {"frames", "detections", "alert_reviews"},
        {"model_alerts", "hard_examples", "deadletter"},
        f"{PREFIX}framestream-monitor",
    ),
    "shadow": ({"detections", "frames"}, {"model_agreement", "deadletter"}, f"{PREFIX}framestream-shadow"),
    "bridge": ({"alerts"}, {"deadletter"}, f"{PREFIX}framestream-bridge-mqtt"),
    "review": (set(), {"alert_reviews"}, None),
    "consumer": ({"alerts"}, set(), f"{PREFIX}downstream-dashboard"),
}
DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
}


@dataclass(frozen=True)
class SecureStack:
    process: ChildProcess
    data_dir: Path
    env_dir: Path
    bootstrap_servers: str

    def role_env(self, role: str) -> dict[str, str]:
        return read_env_file(self.env_dir / f"{role}.env")

    def kafka(self, role: str, **override: object) -> KafkaSettings:
        env = self.role_env(role)
        values: dict[str, object] = {
            "bootstrap_servers": env["FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS"],
            "security_protocol": env["FRAMESTREAM_KAFKA_SECURITY_PROTOCOL"],
            "sasl_username": env["FRAMESTREAM_KAFKA_SASL_USERNAME"],
            "sasl_password": env["FRAMESTREAM_KAFKA_SASL_PASSWORD"],
            "ssl_ca_file": env["FRAMESTREAM_KAFKA_SSL_CA_FILE"],
            "topic_prefix": PREFIX,
            "partitions": PARTITIONS,
        }
        return KafkaSettings(**{**values, **override})

    def passwords(self) -> dict[str, str]:
        return {role: self.role_env(role)["FRAMESTREAM_KAFKA_SASL_PASSWORD"] for role in SPEC}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    base = tmp_path_factory.mktemp("secure")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FRAMESTREAM_", "CLICKHOUSE_"))}
    env |= {
        "FRAMESTREAM_DATA_DIR": str(base / "data"),
        "FRAMESTREAM_KAFKA_TOPIC_PREFIX": PREFIX,
        "FRAMESTREAM_KAFKA_PARTITIONS": str(PARTITIONS),
        "FRAMESTREAM_TRITON_URL": "127.0.0.1:1",  # configured, so no tritonserver starts here
        "PYTHONUNBUFFERED": "1",
    }
    process = ChildProcess.framestream(
        ["services", "--secure", "--broker", "kafka"], log_path=base / "services.log", env=env, grace_s=30
    )
    process.start()
    try:
        wait_until(
            lambda: "export FRAMESTREAM_DATA_DIR" in process.log_since_start() or not process.running,
            240,
            "framestream services --secure to print its environment",
        )
        assert process.running, process.log_tail(60)
        env_dir = base / "data" / "security" / "env"
        servers = read_env_file(env_dir / "admin.env")["FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS"]
        stack = SecureStack(process, base / "data", env_dir, servers)
        seed_every_topic(stack)
        yield stack
    finally:
        process.stop()


def seed_every_topic(stack: SecureStack) -> None:
    """One record on partition 0 of every topic, as admin, for the readers to find."""
    producer = Producer(producer_config(stack.kafka("admin"), "seed"))
    for topic in TOPICS.values():
        producer.produce(topic, key=b"seed", value=b"seed", partition=0)
    assert producer.flush(30) == 0


# -- at the door ----------------------------------------------------------------------------


def refused(config: dict[str, object], timeout_s: float = 10.0) -> str:
    """The error a metadata request with ``config`` gets; fails the test if it succeeds."""
    admin = AdminClient({**config, "log_level": 0})
    with pytest.raises(KafkaException) as raised:
        admin.list_topics(timeout=timeout_s)
    return str(raised.value)


def test_plaintext_unauthenticated_untrusting_and_wrong_password_clients_are_refused(stack: SecureStack) -> None:
    servers = stack.bootstrap_servers
    good = admin_config(stack.kafka("consumer"))
    refused({"bootstrap.servers": servers})  # plaintext to the TLS port
    refused({"bootstrap.servers": servers, "security.protocol": "SSL", "ssl.ca.location": good["ssl.ca.location"]})
    refused({**good, "sasl.password": "not-the-password"})
    refused({**good, "sasl.username": "nobody"})
    refused({**good, "sasl.mechanism": "PLAIN"})
    refused({**good, "ssl.ca.location": "probe"})  # the system CAs do not vouch for the broker
    assert AdminClient(good).list_topics(timeout=10).topics, "the same config with the right password works"


def test_a_role_worker_with_a_wrong_password_fails_and_does_not_print_it(stack: SecureStack, tmp_path: Path) -> None:
    wrong = "Wr0ng-but-secret-" + "x" * 16
    env = worker_env(
        stack.kafka("detect"),
        triton_url="127.0.0.1:1",
        data_dir=tmp_path / "data",
        rules_file=tmp_path / "rules.yaml",
        clickhouse_dsn="chdb://" + str(tmp_path / "ch"),
        clickhouse_database="framestream",
    ) | {**kafka_vars(stack.role_env("detect")), "FRAMESTREAM_KAFKA_SASL_PASSWORD": wrong}
    worker = ChildProcess.framestream(["worker", "--stages", "detect"], log_path=tmp_path / "w.log", env=env)
    worker.start()
    try:
        wait_until(lambda: "uthentication" in worker.log_since_start() or not worker.running, 60, "an auth error")
    finally:
        worker.stop(grace_s=10)
    assert wrong not in worker.log_since_start()


# -- the matrix -----------------------------------------------------------------------------


def write_results(kafka: KafkaSettings) -> dict[str, KafkaError | None]:
    results: dict[str, KafkaError | None] = {}
    producer = Producer({**producer_config(kafka, "matrix"), "message.timeout.ms": 20000})
    try:
        for name, topic in TOPICS.items():
            producer.produce(
                topic,
                key=b"matrix",
                value=b"matrix",
                partition=0,
                on_delivery=lambda e, m, n=name: results.setdefault(n, e),
            )
        producer.flush(30)
    except KafkaException as error:  # a principal with no WRITE at all gets no producer id: a fatal error
        assert error.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, error
        return dict.fromkeys(TOPICS, error.args[0])
    return results


def read_results(kafka: KafkaSettings, group: str) -> dict[str, KafkaError | None]:
    """Per topic: None once a record was read, else the error the broker sent."""
    results: dict[str, KafkaError | None] = {}
    consumer = Consumer({**consumer_config(kafka, group), "topic.metadata.refresh.interval.ms": 1000})
    topic_names = {topic: name for name, topic in TOPICS.items()}
    try:
        # A topic this principal may not even describe is refused in metadata: Kafka does not
        # say whether it exists. The rest are fetched, which needs READ.
        for name, topic in TOPICS.items():
            error = consumer.list_topics(topic, timeout=10).topics[topic].error
            if error is not None:
                assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
                results[name] = error
        fetched = [topic for name, topic in TOPICS.items() if name not in results]
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING) for topic in fetched])
        deadline = time.monotonic() + 30
        while len(results) < len(TOPICS) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.topic() not in topic_names:
                continue
            name = topic_names[message.topic()]
            error = message.error()
            if error is None or error.code() in DENIED:
                results.setdefault(name, error)
    finally:
        consumer.close()
    return results


def commit_error(kafka: KafkaSettings, group: str, topic: str) -> int | None:
    """The error code committing an offset in ``group`` gets (None: committed). Through the admin
    API (OffsetCommit, the same group READ a consumer needs): a consumer refused its group's
    coordinator retries until its close times out."""
    admin = AdminClient(admin_config(kafka))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])
    future = admin.alter_consumer_group_offsets([request], request_timeout=15)[group]
    try:
        partitions = future.result().topic_partitions
    except KafkaException as error:
        return error.args[0].code()
    return next((tp.error.code() for tp in partitions if tp.error is not None), None)


@pytest.mark.parametrize("role", list(SPEC))
def test_each_role_can_do_what_it_needs_and_nothing_else(stack: SecureStack, role: str) -> None:
    reads, writes, group = SPEC[role]
    kafka = stack.kafka(role)

    written = write_results(kafka)
    assert set(written) == ALL, f"no delivery report for {ALL - set(written)}"
    assert {name for name, error in written.items() if error is None} == writes
    for name in ALL - writes:
        assert written[name].code() in DENIED, (name, written[name])

    read = read_results(kafka, group or f"{PREFIX}framestream-{role}")
    assert {name for name, error in read.items() if error is None} == reads
    assert {name for name, error in read.items() if error is not None} == ALL - reads, "each refusal arrives"

    some_read = TOPICS[sorted(reads)[0]] if reads else T.frames
    if group is not None:
        assert commit_error(kafka, group, some_read) is None, "its own group"
    foreign = f"{PREFIX}framestream-detect" if role != "detect" else f"{PREFIX}framestream-persist"
    expected_foreign = None if role == "admin" else KafkaError.GROUP_AUTHORIZATION_FAILED
    assert commit_error(kafka, foreign, some_read) == expected_foreign, "another role's group"

    if role != "admin":
        assert_admin_operations_refused(kafka)


def assert_admin_operations_refused(kafka: KafkaSettings) -> None:
    admin = AdminClient(admin_config(kafka))
    created = admin.create_topics([NewTopic(f"{PREFIX}rogue", 1, 1)], request_timeout=10)[f"{PREFIX}rogue"]
    deleted = admin.delete_topics([T.frames], request_timeout=10)[T.frames]
    acl = AclBinding(
        ResourceType.TOPIC,
        T.frames,
        ResourcePatternType.LITERAL,
        f"User:{kafka.sasl_username}",
        "*",
        AclOperation.ALL,
        AclPermissionType.ALLOW,
    )
    granted = admin.create_acls([acl], request_timeout=10)[acl]
    for future in (created, deleted, granted):
        with pytest.raises(KafkaException) as raised:
            future.result()
        assert raised.value.args[0].code() in DENIED, raised.value


# -- the pipeline ---------------------------------------------------------------------------

RULES = """
rules:
  - id: person-seen
    description: Person seen
    severity: warning
    classes: [person]
    min_score: 0.35
    cooldown_s: 60
"""
CAMERAS = {"cam-person": "person", "cam-dog": "dog"}
FRAMES_PER_CAMERA = 4


def kafka_vars(env: dict[str, str]) -> dict[str, str]:
    """A role env file's connection and credentials (not its topic prefix)."""
    keys = ("BOOTSTRAP_SERVERS", "SECURITY_PROTOCOL", "SASL_USERNAME", "SASL_PASSWORD", "SSL_CA_FILE")
    return {key: value for key, value in env.items() if key.removeprefix("FRAMESTREAM_KAFKA_") in keys}


def run_setup(stack: SecureStack, prefix: str, log_path: Path) -> str:
    """``framestream setup --kafka-users`` as admin for ``prefix``; returns what it logged."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FRAMESTREAM_", "CLICKHOUSE_"))}
    env |= kafka_vars(stack.role_env("admin"))
    env |= {"FRAMESTREAM_KAFKA_TOPIC_PREFIX": prefix, "FRAMESTREAM_KAFKA_PARTITIONS": str(PARTITIONS)}
    setup = ChildProcess.framestream(
        ["setup", "--kafka-users", str(stack.env_dir), "--skip-clickhouse"], log_path=log_path, env=env
    )
    setup.run_to_end(120)
    return setup.log_since_start()


def test_the_pipeline_runs_end_to_end_as_separate_roles(
    stack: SecureStack,
    triton_url: str,
    clickhouse_target,  # noqa: ANN001 - tests.fixtures.clickhouse
    tmp_path: Path,
) -> None:
    # A prefix of its own, set up here by `framestream setup` as admin: the matrix wrote records
    # no stage can read (into the changelogs too) under the module's prefix.
    prefix = f"pipe{uuid.uuid4().hex[:8]}."
    topics = TopicNames(prefix)
    run_setup(stack, prefix, tmp_path / "setup.log")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    store = worker_store(clickhouse_target.dsn, clickhouse_target.embedded, tmp_path)
    base = worker_env(
        stack.kafka("admin", topic_prefix=prefix),
        triton_url=triton_url,
        data_dir=tmp_path / "data",
        rules_file=rules,
        clickhouse_dsn=store.dsn,
        clickhouse_database=store.database,
    )
    workers = [
        WorkerProcess(role, role, base | kafka_vars(stack.role_env(role)), tmp_path)
        for role in ("detect", "alert", "persist")
    ]
    try:
        for worker in workers:
            worker.start()
        ingest = FrameProducer(stack.kafka("ingest", topic_prefix=prefix))
        frames = camera_frames(CAMERAS, FRAMES_PER_CAMERA, spacing_s=0.5)
        for frame in frames:
            ingest.frame(topics.frames, frame)
        ingest.flush()
        persist = workers[2]
        persist.wait_for_metric("framestream_persisted_messages_total", len(frames), 240, kind="detections")
        persist.wait_for_metric("framestream_persisted_messages_total", 1, 60, kind="alerts")
        assert_no_secret_in_processes(stack, [worker.child.pid for worker in workers if worker.child])
        for worker in workers:
            assert worker.terminate() == 0, worker.log_tail()
    finally:
        for worker in workers:
            worker.kill()
    for worker in workers:
        text = worker.log_path.read_text(errors="replace")
        assert not [pw for pw in stack.passwords().values() if pw in text], f"a password in {worker.name}'s log"
    client = store.connect()
    try:
        stored = {row[0] for row in client.query("SELECT event_id FROM frames FINAL").result_rows}
        alerts = {row[0] for row in client.query("SELECT alert_id FROM alerts FINAL").result_rows}
    finally:
        client.close()
        store.drop()
    assert stored == {frame.event_id for frame in frames}, "every frame stored"
    assert "person-seen:cam-person:0" in alerts


# -- where the secrets are ------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def assert_no_secret_in_processes(stack: SecureStack, extra_roots: list[int]) -> None:
    passwords = list(stack.passwords().values())
    assert stack.process.pid is not None
    pids = [pid for root in [stack.process.pid, *extra_roots] for pid in process_tree(root)]
    assert len(pids) >= 2, "the services process and its Kafka JVM"
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert not [pw for pw in passwords if pw in cmdline], f"a password on the command line of {pid}"


def test_secrets_live_only_in_the_0600_env_files(stack: SecureStack) -> None:
    passwords = stack.passwords()
    assert len(set(passwords.values())) == len(SPEC)
    assert_no_secret_in_processes(stack, [])
    printed = stack.process.log_since_start()
    assert "admin.env" in printed and not [pw for pw in passwords.values() if pw in printed]
    holders = []
    for path in stack.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(pw.encode() in data for pw in passwords.values()):
                holders.append(path)
    assert sorted(holders) == sorted(stack.env_dir / f"{role}.env" for role in SPEC)
    for path in holders:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for private in ("ca.key", "broker.pem"):
        assert stat.S_IMODE((stack.data_dir / "security" / private).stat().st_mode) == 0o600
    assert not (stack.data_dir / "kafka" / "node-1" / "format.args").exists(), "the format argfile is removed"


def test_setup_is_idempotent_and_reads_passwords_from_the_env_files(stack: SecureStack, tmp_path: Path) -> None:
    text = run_setup(stack, PREFIX, tmp_path / "setup.log")
    assert '"acls_created": 0' in text and '"acls_deleted": 0' in text, text
    assert not [pw for pw in stack.passwords().values() if pw in text]
    # The roles still log in with the passwords they had.
    assert AdminClient(admin_config(stack.kafka("consumer"))).list_topics(timeout=10).topics


def test_a_secured_three_node_cluster_replicates_over_mutual_tls(tmp_path: Path) -> None:
    """Replication and the controller quorum run as principal ``broker`` over mutual TLS: with
    three nodes, every partition's replicas are all in sync."""
    from framestream.services.kafka import LocalKafkaCluster
    from framestream.services.security import SecurityMaterial
    from streams.topics import create_topics

    material = SecurityMaterial.ensure(tmp_path / "security", hosts=["localhost", "127.0.0.1"])
    with LocalKafkaCluster(tmp_path / "kafka", security=material.broker_security()) as cluster:
        admin = KafkaSettings(
            bootstrap_servers=cluster.bootstrap_servers,
            security_protocol="SASL_SSL",
            sasl_username="admin",
            sasl_password=material.password("admin"),
            ssl_ca_file=material.ca_file,
            replication_factor=3,
        )
        create_topics(admin, ["rf3"], partitions=2, retention_ms=3_600_000, replication_factor=3)
        producer = Producer(producer_config(admin, "rf3"))
        for index in range(10):
            producer.produce("rf3", key=b"k", value=b"%d" % index)
        assert producer.flush(30) == 0
        described = AdminClient(admin_config(admin)).list_topics("rf3", timeout=10).topics["rf3"]
        for partition in described.partitions.values():
            assert sorted(partition.isrs) == sorted(partition.replicas) == [1, 2, 3]
