"""framestream.services.kafka without a JVM: configuration, and the errors that say what is missing."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from framestream.services import kafka as kafka_module
from framestream.services.kafka import (
    JavaNotFound,
    KafkaJarsMissing,
    LocalKafka,
    LocalKafkaCluster,
    NodePorts,
    check_kafka_runtime,
    java_major_version,
    kafka_classpath,
    new_cluster_id,
    node_properties,
    voters,
)
from framestream.services.stack import choose_embedded_broker
from framestream.settings import EmbeddedBroker, Settings
from streams.kafka_config import MAX_MESSAGE_BYTES


def fake_java(folder: Path, version_line: str) -> Path:
    """A ``java`` that prints ``version_line`` to stderr, as ``java -version`` does."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def three_nodes() -> tuple[list[int], list[NodePorts]]:
    return [1, 2, 3], [NodePorts(9001, 9101), NodePorts(9002, 9102), NodePorts(9003, 9103)]


def test_every_node_of_a_cluster_has_the_same_voters_and_its_own_ports(tmp_path: Path) -> None:
    ids, ports = three_nodes()
    quorum = voters(ids, ports, "127.0.0.1")
    assert quorum == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    configs = [
        node_properties(i, p, quorum, tmp_path / str(i), host="127.0.0.1", replication_factor=3, partitions=4)
        for i, p in zip(ids, ports, strict=True)
    ]
    assert {config["controller.quorum.voters"] for config in configs} == {quorum}
    assert [config["node.id"] for config in configs] == ["1", "2", "3"]
    assert configs[1]["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert configs[1]["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9002"
    assert len({config["log.dirs"] for config in configs}) == 3


def test_a_three_node_cluster_replicates_three_times_and_needs_two_in_sync(tmp_path: Path) -> None:
    ids, ports = three_nodes()
    config = node_properties(
        1, ports[0], voters(ids, ports, "h"), tmp_path, host="h", replication_factor=3, partitions=4
    )
    replication = [
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ]
    for key in replication:
        assert config[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
        assert config[key] == "2", key
    assert config["unclean.leader.election.enable"] == "false"


def test_a_single_node_replicates_once(tmp_path: Path) -> None:
    config = node_properties(
        1, NodePorts(9001, 9101), "1@h:9101", tmp_path, host="h", replication_factor=1, partitions=4
    )
    assert config["process.roles"] == "broker,controller"
    assert config["default.replication.factor"] == config["offsets.topic.replication.factor"] == "1"
    assert config["min.insync.replicas"] == config["transaction.state.log.min.isr"] == "1"
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert config["auto.create.topics.enable"] == "false"
    assert int(config["message.max.bytes"]) == MAX_MESSAGE_BYTES >= 1_000_000  # librdkafka's producer maximum
    assert config["log.dirs"] == str(tmp_path)


def test_cluster_ids_are_16_random_bytes_in_url_safe_base64() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert first != second and len(first) == 22 and "=" not in first
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
    ],
)
def test_java_versions_are_read_from_java_version(tmp_path: Path, line: str, major: int) -> None:
    assert java_major_version(fake_java(tmp_path, line)) == major


def test_old_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15').parent.parent))
    with pytest.raises(JavaNotFound, match=r"needs Java 17\+, but .* is Java 11"):
        check_kafka_runtime()


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFound, match=r"no `java` is on PATH.*FRAMESTREAM_EMBEDDED_BROKER=tansu"):
        LocalKafka(tmp_path).start()
    with pytest.raises(JavaNotFound):
        LocalKafkaCluster(tmp_path).start()


def test_missing_jars_say_to_run_setup(tmp_path: Path) -> None:
    with pytest.raises(KafkaJarsMissing, match=r"run ./scripts/setup.sh"):
        kafka_classpath(tmp_path)
    (tmp_path / "kafka_2.13-4.1.1.jar").touch()
    assert kafka_classpath(tmp_path) == f"{tmp_path}/*"


def test_auto_falls_back_to_tansu_with_a_warning_and_explicit_choices_stand(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("framestream.services.stack.kafka_unavailable_reason", lambda: "no java here")
    assert choose_embedded_broker(EmbeddedBroker.AUTO) is EmbeddedBroker.TANSU
    assert "Tansu, not Apache Kafka: no java here" in caplog.text
    assert choose_embedded_broker(EmbeddedBroker.KAFKA_CLUSTER) is EmbeddedBroker.KAFKA_CLUSTER
    monkeypatch.setattr("framestream.services.stack.kafka_unavailable_reason", lambda: None)
    assert choose_embedded_broker(EmbeddedBroker.AUTO) is EmbeddedBroker.KAFKA


def test_the_environment_chooses_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAMESTREAM_EMBEDDED_BROKER", raising=False)
    assert Settings().embedded_broker is EmbeddedBroker.AUTO
    monkeypatch.setenv("FRAMESTREAM_EMBEDDED_BROKER", "kafka-cluster")
    assert Settings().embedded_broker is EmbeddedBroker.KAFKA_CLUSTER
    assert Settings().kafka.profile.value == "kafka"  # the client profile's default


def test_the_launcher_runs_the_jars_of_the_committed_pom() -> None:
    pom = (kafka_module.KAFKA_HOME / "pom.xml").read_text()
    assert "<kafka.version>4.1.1</kafka.version>" in pom and "log4j-slf4j-impl" in pom
    assert kafka_module.LIBS_DIR == kafka_module.KAFKA_HOME / "libs"
    assert kafka_module.LOG_CONFIG.is_file()
