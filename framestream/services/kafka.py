"""The embedded Apache Kafka (KRaft): one combined broker+controller node, or three on one host.

The jars come from Maven Central through ``infra/kafka/pom.xml`` (``./scripts/setup.sh``
copies them into ``infra/kafka/libs/``); Java 17+ runs them. Each node gets a generated
``server.properties`` on free ports, its storage is formatted once with
``kafka.tools.StorageTool format`` and ``kafka.Kafka`` serves it::

    with LocalKafka(tmp_path) as kafka:               # one node, replication factor 1
        use(kafka.bootstrap_servers)
    with LocalKafkaCluster(tmp_path) as cluster:       # a quorum of three, RF 3, min ISR 2
        cluster.node(cluster.leader_of(topic, 0)).kill()

Secured (``security=BrokerSecurity``, ``framestream services --secure``): clients connect
over SASL_SSL (TLS + SCRAM-SHA-512) on the broker port; brokers and controllers talk over
mutual TLS (principal ``broker``, from the certificate's CN) on their own listeners; KRaft's
``StandardAuthorizer`` refuses whatever no ACL allows, ``admin`` and ``broker`` being the
super users. The admin's SCRAM credential is written when the storage is formatted; its
password reaches ``StorageTool`` in a 0600 Java argument file (``java @file``), never on a
command line.

Why a static quorum (``controller.quorum.voters``) and never ``--standalone``: every node
must agree on the same voter set, or each formats a cluster of its own. Every JVM runs as
a ``ChildProcess``: SIGTERM (Kafka's controlled shutdown), a grace period, then SIGKILL.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from framestream.child_process import ChildProcess, ChildProcessFailed
from framestream.services.broker import BrokerBinaryNotFound, BrokerError, BrokerPortInUse
from framestream.services.probes import LOCALHOST, free_port, port_is_free
from framestream.services.security import BROKER_CN, BrokerSecurity, write_private
from framestream.settings import REPO_ROOT
from streams.kafka_config import MAX_MESSAGE_BYTES, SASL_MECHANISM

log = logging.getLogger(__name__)

KAFKA_HOME = REPO_ROOT / "infra" / "kafka"
LIBS_DIR = KAFKA_HOME / "libs"
LOG_CONFIG = KAFKA_HOME / "log4j2.properties"
MIN_JAVA_VERSION = 17  # Kafka 4.x brokers need Java 17
# Two cores are shared by three brokers, Triton and the workers: a small heap, one GC thread.
JAVA_OPTIONS = ("-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
CLUSTER_SIZE = 3
STARTED_LINE = "Kafka Server started"  # kafka.server.KafkaRaftServer, once the node serves requests
_BIND_FAILURE = re.compile(r"Socket server failed to bind|java.net.BindException")
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


class JavaNotFound(BrokerError):
    """No usable Java: the embedded Apache Kafka cannot run (Tansu can)."""


class KafkaJarsMissing(BrokerBinaryNotFound):
    """infra/kafka/libs/ holds no Kafka jars: ./scripts/setup.sh has not run its Maven step."""


# -- what the machine has -----------------------------------------------------------------


def java_executable() -> Path:
    """``$JAVA_HOME/bin/java`` when set, else ``java`` on PATH; JavaNotFound otherwise."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is not None and candidate.is_file():
        return candidate
    found = shutil.which("java")
    if found is None:
        raise JavaNotFound(
            f"the embedded Apache Kafka needs Java {MIN_JAVA_VERSION}+ and no `java` is on PATH "
            "(set JAVA_HOME or install OpenJDK 17); FRAMESTREAM_EMBEDDED_BROKER=tansu runs the Tansu broker instead"
        )
    return Path(found)


@functools.cache
def java_major_version(java: Path) -> int:
    """The major version ``java -version`` reports (``1.8`` counts as 8). Cached: it costs a JVM start."""
    result = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    match = _JAVA_VERSION.search(result.stderr + result.stdout)
    if result.returncode != 0 or match is None:
        raise JavaNotFound(f"`{java} -version` failed or printed no version: {result.stderr.strip()[:300]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def kafka_classpath(libs_dir: Path = LIBS_DIR) -> str:
    """``libs_dir/*`` once the Kafka jars are there; KafkaJarsMissing says how to get them."""
    if not any(libs_dir.glob("kafka_2.13-*.jar")):
        raise KafkaJarsMissing(
            f"the Apache Kafka jars are missing from {libs_dir}: run ./scripts/setup.sh "
            "(its Maven step copies them from Maven Central), or set FRAMESTREAM_EMBEDDED_BROKER=tansu"
        )
    return str(libs_dir / "*")


def check_kafka_runtime(libs_dir: Path = LIBS_DIR) -> tuple[Path, str]:
    """The java executable and classpath, or a BrokerError saying what is missing."""
    java = java_executable()
    version = java_major_version(java)
    if version < MIN_JAVA_VERSION:
        raise JavaNotFound(
            f"the embedded Apache Kafka needs Java {MIN_JAVA_VERSION}+, but {java} is Java {version}; "
            "set JAVA_HOME to a newer JDK, or FRAMESTREAM_EMBEDDED_BROKER=tansu"
        )
    return java, kafka_classpath(libs_dir)


def kafka_unavailable_reason(libs_dir: Path = LIBS_DIR) -> str | None:
    """None when the embedded Apache Kafka can run here, else why not (for a fallback warning)."""
    try:
        check_kafka_runtime(libs_dir)
    except BrokerError as error:
        return str(error)
    return None


# -- configuration ------------------------------------------------------------------------


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
    ``kafka-storage random-uuid`` prints), made here to spare a JVM start."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class NodePorts:
    broker: int  # PLAINTEXT (or SASL_SSL when secured): clients, and replication when plaintext
    controller: int  # CONTROLLER: the KRaft quorum
    internal: int | None = None  # secured only: INTERNAL, replication over mutual TLS


def voters(node_ids: list[int], ports: list[NodePorts], host: str) -> str:
    """``controller.quorum.voters``: the same static list on every node."""
    return ",".join(f"{node_id}@{host}:{p.controller}" for node_id, p in zip(node_ids, ports, strict=True))


def node_properties(
    node_id: int,
    ports: NodePorts,
    quorum_voters: str,
    log_dir: Path,
    *,
    host: str,
    replication_factor: int,
    partitions: int,
    security: BrokerSecurity | None = None,
) -> dict[str, str]:
    """``server.properties`` of one combined broker+controller node.

    ``replication_factor`` is the cluster's size (1 or 3): internal topics and new topics
    get it, and with 3 a write needs two in-sync replicas (``min.insync.replicas=2``), so
    acks=all survives one broker down and refuses writes with two down.
    """
    min_isr = str(min(2, replication_factor))
    rf = str(replication_factor)
    listeners = {} if security is None else secure_listener_properties(ports, host, security)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": quorum_voters,
        "listeners": f"PLAINTEXT://{host}:{ports.broker},CONTROLLER://{host}:{ports.controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{ports.broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(partitions),  # for a topic created without a count; ours say theirs
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "8",  # default 50: slower to create, and a few groups here
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Topics are created explicitly with their partition counts and configs; a typo
        # must fail, not create a topic faust would then refuse.
        "auto.create.topics.enable": "false",
        # Tests and the demo start consumers right away; the 3 s default only delays them.
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),  # what the producers send (kafka_config)
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        # One host, two cores: fewer threads than the defaults sized for servers.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        # Retention checks every 10 s (default 5 min) so short retentions take effect in tests.
        "log.retention.check.interval.ms": "10000",
        # Only an in-sync replica may lead: a stale one would drop acknowledged records.
        "unclean.leader.election.enable": "false",
        **listeners,
    }


def secure_listener_properties(ports: NodePorts, host: str, security: BrokerSecurity) -> dict[str, str]:
    """Listeners and authorizer of a secured node (see the module docstring); no secret in them."""
    if ports.internal is None:
        raise ValueError("a secured node needs an internal (replication) port")
    return {
        "listeners": f"CLIENTS://{host}:{ports.broker},INTERNAL://{host}:{ports.internal},"
        f"CONTROLLER://{host}:{ports.controller}",
        "advertised.listeners": f"CLIENTS://{host}:{ports.broker},INTERNAL://{host}:{ports.internal}",
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": "CLIENTS:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms": SASL_MECHANISM,
        "listener.name.clients.sasl.enabled.mechanisms": SASL_MECHANISM,
        f"listener.name.clients.{SASL_MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(security.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(security.truststore),
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "ssl.endpoint.identification.algorithm": "https",
        # Brokers and controllers prove who they are with the broker certificate.
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^.*CN=([a-zA-Z0-9._-]+).*$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:admin;User:{BROKER_CN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def write_properties(path: Path, properties: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# generated by framestream/services/kafka.py; rewritten on every start"]
    lines += [f"{key}={value}" for key, value in properties.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fetch_cluster_metadata(
    bootstrap_servers: str, timeout_s: float, client_config: dict[str, Any] | None = None
) -> ClusterMetadata:
    """All-topics metadata; KRaft brokers list only the brokers the active controller has unfenced.
    ``client_config``: security settings (the admin's, for a secured cluster)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, **(client_config or {})})
    return admin.list_topics(timeout=timeout_s)


def controller_accepts_topics(
    bootstrap_servers: str, replication_factor: int, timeout_s: float, client_config: dict[str, Any] | None = None
) -> bool:
    """Whether a validate-only CreateTopics with this replication factor succeeds. Brokers
    forward it to the active controller, so success means the quorum has a leader and that
    leader counts enough live brokers to place every replica."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0, **(client_config or {})})
    probe = NewTopic(f"framestream-ready-probe-{uuid.uuid4().hex[:8]}", 1, replication_factor)
    future = admin.create_topics([probe], validate_only=True, request_timeout=timeout_s)[probe.topic]
    try:
        future.result(timeout=timeout_s + 1)
    except Exception:  # KafkaException or a timeout: no quorum leader yet, or brokers still fenced
        return False
    return True


# -- one node -----------------------------------------------------------------------------


class KafkaNode:
    """One combined broker+controller JVM; its data survives restart() (not a new format)."""

    def __init__(
        self,
        node_id: int,
        ports: NodePorts,
        data_dir: Path,
        log_path: Path,
        *,
        cluster_id: str,
        properties: dict[str, str],
        java: Path,
        classpath: str,
        grace_s: float,
        probe_ports: bool = True,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.node_id = node_id
        self.security = security
        self.probe_ports = probe_ports
        self.ports = ports
        self.data_dir = data_dir
        self.log_dir = Path(properties["log.dirs"])
        self.cluster_id = cluster_id
        self.config_path = write_properties(data_dir / "server.properties", properties)
        self.log_path = log_path
        self._java = java
        self._classpath = classpath
        self._process = ChildProcess(
            self._java_command("kafka.Kafka", str(self.config_path)), log_path=log_path, grace_s=grace_s
        )

    @property
    def bootstrap_server(self) -> str:
        return f"{LOCALHOST}:{self.ports.broker}"

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        return [*self._jvm(), main_class, *args]

    def _jvm(self) -> list[str]:
        return [str(self._java), *JAVA_OPTIONS, f"-Dlog4j2.configurationFile={LOG_CONFIG}", "-cp", self._classpath]

    def format_storage(self, timeout_s: float = 120.0) -> None:
        """``StorageTool format`` once: a log dir that already holds meta.properties is kept."""
        if (self.log_dir / "meta.properties").exists():
            return
        # --cluster-id=ID in one argument: a base64 id may start with "-", which argparse
        # would read as an option if it stood alone (1 in 64 ids failed to format).
        args = [
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self.cluster_id}",
            "--config",
            str(self.config_path),
        ]
        command = [*self._jvm(), *args]
        argfile = self.data_dir / "format.args"
        if self.security is not None:
            # The admin's SCRAM credential, in a 0600 file the Java launcher expands (``@file``;
            # it expands none after the main class, so the class is in the file too):
            # /proc/<pid>/cmdline shows only the file's name. Deleted once formatted.
            scram = f"--add-scram={SASL_MECHANISM}=[name=admin,password={self.security.admin_password}]"
            write_private(argfile, "\n".join([*args, scram]).encode())
            command = [*self._jvm(), f"@{argfile}"]
        formatter = ChildProcess(command, log_path=self.log_path)
        try:
            formatter.run_to_end(timeout_s)
        except ChildProcessFailed as error:
            raise BrokerError(f"formatting Kafka node {self.node_id}'s storage failed: {error}") from error
        finally:
            argfile.unlink(missing_ok=True)

    def start(self) -> KafkaNode:
        """Start the JVM (formatting its storage first if new); readiness is the caller's check."""
        ports = (self.ports.broker, self.ports.controller, self.ports.internal)
        for port in [port for port in ports if port is not None] if self.probe_ports else ():
            if not port_is_free(LOCALHOST, port):
                raise BrokerPortInUse(f"cannot start Kafka node {self.node_id}: {LOCALHOST}:{port} is already in use")
        self.format_storage()
        self._process.start()
        return self

    def started(self) -> bool:
        """Whether this start logged "Kafka Server started"; raises if the JVM has exited or
        failed to bind (after a bind failure Kafka logs a fatal error but may linger for minutes)."""
        self.raise_if_exited()
        log_text = self._process.log_since_start()
        if _BIND_FAILURE.search(log_text):
            raise BrokerPortInUse(
                f"Kafka node {self.node_id} could not bind {LOCALHOST}:{self.ports.broker} or "
                f":{self.ports.controller} (already in use); see {self.log_path}"
            )
        return STARTED_LINE in log_text

    def raise_if_exited(self) -> None:
        if self._process.running or self._process.pid is None:
            return
        tail = self._process.log_tail(30)
        if _BIND_FAILURE.search(tail):
            raise BrokerPortInUse(
                f"Kafka node {self.node_id} could not bind {LOCALHOST}:{self.ports.broker} or "
                f":{self.ports.controller} (already in use); see {self.log_path}"
            )
        raise BrokerError(f"Kafka node {self.node_id} exited with {self._process.poll()}; see {self.log_path}:\n{tail}")

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM (controlled shutdown: leadership moves away first), grace, then SIGKILL.
        A paused node is resumed first, or it would sit out the whole grace period."""
        self._process.resume()
        self._process.stop(grace_s)

    def signal_stop(self) -> None:
        """SIGTERM without waiting, so several nodes shut down together."""
        self._process.resume()
        self._process.signal(self._process.stop_signal)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed; the log dir is kept for restart()."""
        self._process.kill()

    def pause(self) -> None:
        """SIGSTOP: a frozen broker (a long GC pause); its sessions time out while paused."""
        self._process.pause()

    def resume(self) -> None:
        self._process.resume()

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines)


# -- clusters -----------------------------------------------------------------------------


class LocalKafkaCluster:
    """``size`` KRaft nodes on one host (default three: replication factor 3, min ISR 2).

    ``data_dir`` holds one folder per node (``node-<id>/``: properties and the log dir); it
    is kept across restarts of a node and wiped on start() when ``fresh`` (the default), so
    each start is a new, empty cluster. Node logs go to ``log_dir`` (default ``data_dir``).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        size: int = CLUSTER_SIZE,
        ports: list[NodePorts] | None = None,
        log_dir: Path | None = None,
        partitions: int = 4,
        fresh: bool = True,
        startup_timeout_s: float = 180.0,
        grace_s: float = 30.0,
        libs_dir: Path = LIBS_DIR,
        extra_properties: Mapping[str, str] | None = None,
        cluster_id: str | None = None,
        probe_ports: bool = True,  # False: leave a taken port to the server's own bind, read from its log
        security: BrokerSecurity | None = None,
    ) -> None:
        if ports is not None and len(ports) != size:
            raise ValueError(f"{len(ports)} port pairs for {size} nodes")
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else self.data_dir
        self.size = size
        self.partitions = partitions
        self.fresh = fresh
        self.startup_timeout_s = startup_timeout_s
        self.grace_s = grace_s
        self.libs_dir = libs_dir
        # Broker settings over the generated ones, on every node (e.g. a test's
        # log.retention.check.interval.ms); values are written as given.
        self.extra_properties = dict(extra_properties or {})
        self.probe_ports = probe_ports
        self.security = security
        self.cluster_id = cluster_id or new_cluster_id()  # given: e.g. to match storage formatted before
        self._requested_ports = ports
        self.nodes: list[KafkaNode] = []

    @property
    def replication_factor(self) -> int:
        return min(self.size, 3)

    @property
    def bootstrap_servers(self) -> str:
        if not self.nodes:
            raise BrokerError("the Kafka cluster is not running; call start() first")
        return ",".join(node.bootstrap_server for node in self.nodes)

    @property
    def running(self) -> bool:
        return any(node.running for node in self.nodes)

    def client_config(self) -> dict[str, Any]:
        """librdkafka security settings of the admin principal (empty when not secured): the
        launcher's own probes, and tests that need a super user."""
        if self.security is None:
            return {}
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SASL_MECHANISM,
            "sasl.username": "admin",
            "sasl.password": self.security.admin_password,
            "ssl.ca.location": str(self.security.truststore),
        }

    def node(self, index: int) -> KafkaNode:
        """Node by position (0-based; its node id is index + 1)."""
        return self.nodes[index]

    def start(self) -> LocalKafkaCluster:
        if self.nodes:
            raise BrokerError("the Kafka cluster is already started")
        java, classpath = check_kafka_runtime(self.libs_dir)
        # Ports we pick can be taken between the probe and the JVM's bind: pick again then.
        attempts = 1 if self._requested_ports is not None else 3
        for attempt in range(1, attempts + 1):
            try:
                self._launch(java, classpath, self._requested_ports or self._free_ports())
                return self
            except BrokerPortInUse:
                self.stop()
                if attempt == attempts:
                    raise
        return self

    def _free_ports(self) -> list[NodePorts]:
        per_node = 2 if self.security is None else 3
        picked: set[int] = set()
        while len(picked) < per_node * self.size:
            picked.add(free_port(LOCALHOST))
        ordered = sorted(picked)
        if per_node == 2:
            return [NodePorts(ordered[2 * i], ordered[2 * i + 1]) for i in range(self.size)]
        return [NodePorts(ordered[3 * i], ordered[3 * i + 1], ordered[3 * i + 2]) for i in range(self.size)]

    def _launch(self, java: Path, classpath: str, ports: list[NodePorts]) -> None:
        if self.fresh:  # only our node folders: data_dir may hold other things
            for node_dir in self.data_dir.glob("node-*"):
                shutil.rmtree(node_dir, ignore_errors=True)
        node_ids = list(range(1, self.size + 1))
        quorum = voters(node_ids, ports, LOCALHOST)
        self.nodes = [
            self._node(node_id, node_ports, quorum, java, classpath)
            for node_id, node_ports in zip(node_ids, ports, strict=True)
        ]
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready(self.startup_timeout_s)
        except BaseException:
            self.stop(grace_s=5)
            raise
        log.info("embedded Apache Kafka ready", extra={"bootstrap_servers": self.bootstrap_servers, "nodes": self.size})

    def _node(self, node_id: int, ports: NodePorts, quorum: str, java: Path, classpath: str) -> KafkaNode:
        node_dir = self.data_dir / f"node-{node_id}"
        properties = node_properties(
            node_id,
            ports,
            quorum,
            node_dir / "log",
            host=LOCALHOST,
            replication_factor=self.replication_factor,
            partitions=self.partitions,
            security=self.security,
        )
        properties.update(self.extra_properties)
        return KafkaNode(
            node_id,
            ports,
            node_dir,
            self.log_dir / f"kafka-{node_id}.log",
            cluster_id=self.cluster_id,
            properties=properties,
            java=java,
            classpath=classpath,
            grace_s=self.grace_s,
            probe_ports=self.probe_ports,
            security=self.security,
        )

    def wait_ready(self, timeout_s: float) -> None:
        """Until every running node logged its start, metadata lists each of them on its own
        port, and the controller accepts a topic with the cluster's replication factor."""
        deadline = time.monotonic() + timeout_s
        wanted = {node.node_id: node.ports.broker for node in self.nodes if node.running}
        while True:
            if all(node.started() for node in self.nodes if node.running) and self._serving(wanted):
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Apache Kafka was not ready within {timeout_s:.0f}s; see the node logs in "
                    f"{self.log_dir} (kafka-<node>.log)"
                )
            time.sleep(0.25)

    def _serving(self, wanted: dict[int, int]) -> bool:
        servers = ",".join(node.bootstrap_server for node in self.nodes if node.running)
        try:
            metadata = fetch_cluster_metadata(servers, timeout_s=2.0, client_config=self.client_config())
        except KafkaException:
            return False
        listed = {broker.id: broker.port for broker in metadata.brokers.values()}
        if any(listed.get(node_id) != port for node_id, port in wanted.items()):
            return False
        return controller_accepts_topics(
            servers, min(len(wanted), self.replication_factor), timeout_s=5.0, client_config=self.client_config()
        )

    def restart(self, index: int, timeout_s: float | None = None) -> KafkaNode:
        """Stop node ``index`` if running (SIGTERM), start it on the same ports and log dir,
        and wait until the cluster lists it again."""
        node = self.nodes[index]
        node.stop()
        node.start()
        self.wait_ready(self.startup_timeout_s if timeout_s is None else timeout_s)
        return node

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """Index (into ``nodes``) of the node leading ``topic``'s ``partition``, as metadata says now."""
        servers = ",".join(node.bootstrap_server for node in self.nodes if node.running) or self.bootstrap_servers
        metadata = fetch_cluster_metadata(servers, timeout_s=10.0, client_config=self.client_config())
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or partition not in described.partitions:
            raise BrokerError(f"no metadata for {topic}[{partition}]")
        leader_id = described.partitions[partition].leader
        for index, node in enumerate(self.nodes):
            if node.node_id == leader_id:
                return index
        raise BrokerError(f"{topic}[{partition}] has no leader now (leader id {leader_id})")

    def wait_for_leader(
        self, topic: str, partition: int = 0, *, not_index: int | None = None, timeout_s: float = 60.0
    ) -> int:
        """Index of the node leading ``topic[partition]`` once it is a running node other than
        ``not_index``. A killed leader stays in metadata until the controller fences it
        (``broker.session.timeout.ms``, 9 s), so fault tests wait here for the failover."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                index = self.leader_of(topic, partition)
                if index != not_index and self.nodes[index].running:
                    return index
            except (BrokerError, KafkaException):
                pass
            if time.monotonic() > deadline:
                raise BrokerError(f"{topic}[{partition}] has no new leader after {timeout_s:.0f}s")
            time.sleep(0.25)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop every node at once (SIGTERM to all, then wait): stopping them one by one would
        make the last ones wait for a quorum that is already gone. Idempotent."""
        for node in self.nodes:
            node.signal_stop()
        for node in self.nodes:
            node.stop(grace_s)
        self.nodes = []

    def __enter__(self) -> LocalKafkaCluster:
        return self if self.nodes else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LocalKafka(LocalKafkaCluster):
    """One combined broker+controller node: replication factor 1, min ISR 1."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        log_dir: Path | None = None,
        partitions: int = 4,
        fresh: bool = True,
        startup_timeout_s: float = 120.0,
        grace_s: float = 30.0,
        libs_dir: Path = LIBS_DIR,
        extra_properties: Mapping[str, str] | None = None,
        cluster_id: str | None = None,
        probe_ports: bool = True,  # False: leave a taken port to the server's own bind, read from its log
        security: BrokerSecurity | None = None,
    ) -> None:
        ports = None
        if port is not None or controller_port is not None:
            broker_port = port or free_port(LOCALHOST)
            while controller_port is None or controller_port == broker_port:
                controller_port = free_port(LOCALHOST)
            internal = None
            while security is not None and internal in (None, broker_port, controller_port):
                internal = free_port(LOCALHOST)
            ports = [NodePorts(broker_port, controller_port, internal)]
        super().__init__(
            data_dir,
            size=1,
            ports=ports,
            log_dir=log_dir,
            partitions=partitions,
            fresh=fresh,
            startup_timeout_s=startup_timeout_s,
            grace_s=grace_s,
            libs_dir=libs_dir,
            extra_properties=extra_properties,
            cluster_id=cluster_id,
            probe_ports=probe_ports,
            security=security,
        )

    @property
    def port(self) -> int:
        return self.node(0).ports.broker
