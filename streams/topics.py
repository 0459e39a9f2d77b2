"""Every topic name, defined once, and the one place topics are created, checked and deleted.

A prefix isolates tests and tenants on a shared broker. Topics are created explicitly before
any worker starts (never auto-created): the partition count decides which partition a
camera's records land on, and faust refuses a table whose changelog differs from its source.

Every function takes ``KafkaSettings`` (its security settings included: on SASL_SSL only the
admin principal may create topics) or a bare ``host:port`` of a plaintext broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from streams.kafka_config import MAX_MESSAGE_BYTES, KafkaSettings, admin_config

FRAMES = "vision.frames.v1"
DETECTIONS = "vision.detections.v1"
ALERTS = "vision.alerts.v1"
DEADLETTER = "vision.deadletter.v1"
TRACKS = "vision.tracks.v1"  # per-frame tracked objects and scene events (tracking stage)
MODEL_ALERTS = "vision.model-alerts.v1"  # drift per camera (monitor stage)
ALERT_REVIEWS = "vision.alert-reviews.v1"  # verdicts on alerts, from downstream systems or the CLI
HARD_EXAMPLES = "vision.hard-examples.v1"  # frames worth labelling, sampled by the monitor stage
CAMERA_HEALTH = "vision.camera-health.v1"  # per-camera health events from ingest
MODEL_AGREEMENT = "vision.model-agreement.v1"  # shadow mode: a candidate detector vs the served one


@dataclass(frozen=True)
class TopicNames:
    """The concrete topic names for one deployment (``prefix`` + base name)."""

    prefix: str = ""

    @property
    def frames(self) -> str:
        return self.prefix + FRAMES

    @property
    def detections(self) -> str:
        return self.prefix + DETECTIONS

    @property
    def alerts(self) -> str:
        return self.prefix + ALERTS

    @property
    def deadletter(self) -> str:
        return self.prefix + DEADLETTER

    @property
    def tracks(self) -> str:
        return self.prefix + TRACKS

    @property
    def model_alerts(self) -> str:
        return self.prefix + MODEL_ALERTS

    @property
    def alert_reviews(self) -> str:
        return self.prefix + ALERT_REVIEWS

    @property
    def hard_examples(self) -> str:
        return self.prefix + HARD_EXAMPLES

    @property
    def camera_health(self) -> str:
        return self.prefix + CAMERA_HEALTH

    @property
    def model_agreement(self) -> str:
        return self.prefix + MODEL_AGREEMENT

    @property
    def cooldowns_changelog(self) -> str:
        """The alert stage's table changelog; named after the deployment, not the faust app id,
        so the alert state survives a change of stage layout. Created up front like the rest."""
        return f"{self.prefix}framestream.alert.cooldowns-changelog"

    @property
    def tracker_changelog(self) -> str:
        """The track stage's per-camera tracker state (``streams/track.py``), named like the cooldowns'."""
        return f"{self.prefix}framestream.track.state-changelog"

    def all(self) -> list[str]:
        return [
            self.frames,
            self.detections,
            self.alerts,
            self.deadletter,
            self.tracks,
            self.model_alerts,
            self.alert_reviews,
            self.hard_examples,
            self.camera_health,
            self.model_agreement,
        ]


class TopicError(RuntimeError):
    """A topic operation failed; the message says what to do."""


class TopicMismatchError(TopicError):
    pass


def fetch_metadata(bootstrap_servers: KafkaSettings | str, timeout_s: float) -> ClusterMetadata:
    """All-topics metadata (on SASL_SSL: the topics this principal may describe). Never pass a
    topic name: Tansu auto-creates named unknown topics."""
    admin = AdminClient(admin_config(bootstrap_servers))
    return admin.list_topics(timeout=timeout_s)


def create_topics(
    bootstrap_servers: KafkaSettings | str,
    topics: TopicNames | Iterable[str],
    *,
    partitions: int,
    retention_ms: int,
    replication_factor: int = 1,
    extra_config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics if missing and wait until metadata shows them all; returns their names.

    Existing topics are fine when their partition count matches; a different count
    raises ``TopicMismatchError`` (keys would map to other partitions than expected). A topic
    this principal may not create (a role worker on a secured broker, where ``framestream
    setup`` created them as admin) is left to that principal's own clients to find.
    """
    names = topics.all() if isinstance(topics, TopicNames) else list(topics)
    config = {"retention.ms": str(retention_ms), "max.message.bytes": str(MAX_MESSAGE_BYTES), **(extra_config or {})}
    admin = AdminClient(admin_config(bootstrap_servers))
    requests = [NewTopic(name, partitions, replication_factor, config=config) for name in names]
    futures = admin.create_topics(requests, request_timeout=timeout_s)
    not_ours: set[str] = set()
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            code = error.args[0].code()
            if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                not_ours.add(name)
            elif code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicError(f"cannot create topic {name!r}: {error.args[0].str()}") from error
    _wait_for_topics(bootstrap_servers, [name for name in names if name not in not_ours], partitions, timeout_s)
    return names


def create_deployment_topics(kafka: KafkaSettings) -> None:
    """Every topic a deployment needs, with the configured partitions and retention; the alert
    table's changelog too (compacted, kept forever), since faust must not create it."""
    topics = TopicNames(kafka.topic_prefix)
    create_topics(
        kafka,
        topics,
        partitions=kafka.partitions,
        retention_ms=kafka.retention_ms,
        replication_factor=kafka.replication_factor,
    )
    create_topics(
        kafka,
        [topics.cooldowns_changelog, topics.tracker_changelog],
        partitions=kafka.partitions,
        retention_ms=kafka.retention_ms,
        replication_factor=kafka.replication_factor,
        extra_config={"cleanup.policy": "compact", "retention.ms": "-1"},
    )


def _wait_for_topics(
    bootstrap_servers: KafkaSettings | str, names: list[str], partitions: int, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = fetch_metadata(bootstrap_servers, timeout_s=min(5.0, timeout_s))
        except KafkaException as error:  # a broker restarting (transport, timeout): ask again until the deadline
            if time.monotonic() > deadline:
                raise TopicError(f"no topic metadata within {timeout_s:.0f}s: {error.args[0].str()}") from error
            time.sleep(0.5)
            continue
        missing = []
        for name in names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                missing.append(name)
            elif len(topic.partitions) != partitions:
                raise TopicMismatchError(
                    f"topic {name!r} already exists with {len(topic.partitions)} partitions, "
                    f"expected {partitions}: delete it, or choose another topic prefix "
                    "(FRAMESTREAM_KAFKA_TOPIC_PREFIX) or partition count (FRAMESTREAM_KAFKA_PARTITIONS)"
                )
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topics not visible in metadata after {timeout_s:.0f}s: {', '.join(missing)}")
        time.sleep(0.2)


def delete_topics(bootstrap_servers: KafkaSettings | str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics; missing ones are fine. Frees Tansu's memory after tests."""
    admin = AdminClient(admin_config(bootstrap_servers))
    futures = admin.delete_topics(list(names), request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicError(f"cannot delete topic {name!r}: {error.args[0].str()}") from error
