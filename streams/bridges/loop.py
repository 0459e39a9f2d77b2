"""The loop every bridge shares: consume alerts, deliver each, store its offset, repeat.

At least once: ``enable.auto.offset.store`` is off, so librdkafka's periodic commit only
ever covers offsets stored *after* their alert was delivered (or dead-lettered). A
transient failure on the other side (broker away, HTTP 503) is retried with backoff for as
long as it lasts -- the bridge's consumption pauses, nothing is skipped. A permanent one (a
record that is not an alert, a webhook answering 400) becomes a dead letter with the
reason, and the bridge goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, Message, Producer
from prometheus_client import Counter
from pydantic import ValidationError

from schemas import Alert, DeadLetter
from schemas.base import utc_now
from streams.deadletter import decode_headers
from streams.kafka_config import KafkaSettings, consumer_config, producer_config
from streams.retry import RetryCancelled, RetryPolicy, retry_sync
from streams.topics import TopicNames

log = logging.getLogger(__name__)

BRIDGE_RETRY = RetryPolicy(initial_s=0.2, max_s=10.0, multiplier=2.0, jitter=0.2)
POLL_TIMEOUT_S = 0.5
DEAD_LETTER_TIMEOUT_S = 30.0

DELIVERED = Counter("framestream_bridge_delivered_total", "Alerts the other side acknowledged", ["bridge"])
RETRIED = Counter("framestream_bridge_retries_total", "Transient delivery failures retried", ["bridge"])
DEAD_LETTERED = Counter("framestream_bridge_dead_letters_total", "Records dead-lettered by a bridge", ["bridge"])


class DeliveryUnavailable(ConnectionError):
    """The other side is away or overloaded (transient): retried, never skipped."""


class DeliveryRefused(ValueError):
    """The other side refused this alert for good (permanent): it becomes a dead letter."""


class AlertSink(Protocol):
    """One kind of receiver. ``deliver`` returns once the alert is acknowledged, or raises
    ``DeliveryUnavailable`` (retry) or ``DeliveryRefused`` (dead letter)."""

    name: str

    def deliver(self, alert: Alert, payload: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass
class BridgeCounts:
    delivered: int = 0
    dead_letters: int = 0


def group_id(kafka: KafkaSettings, bridge: str) -> str:
    """One consumer group per bridge kind and deployment: two MQTT bridges share the partitions."""
    return f"{kafka.topic_prefix}framestream-bridge-{bridge}"


class AlertBridge:
    """Runs ``sink`` over the alerts topic until ``stop`` is set."""

    def __init__(
        self,
        kafka: KafkaSettings,
        sink: AlertSink,
        stop: threading.Event,
        *,
        retry: RetryPolicy = BRIDGE_RETRY,
        on_delivered: Callable[[Alert], None] | None = None,
    ) -> None:
        self.kafka = kafka
        self.sink = sink
        self.stop = stop
        self.retry = retry
        self.on_delivered = on_delivered
        self.topics = TopicNames(kafka.topic_prefix)
        self.counts = BridgeCounts()

    def run(self) -> BridgeCounts:
        config = consumer_config(self.kafka, group_id(self.kafka, self.sink.name))
        config.update({"enable.auto.commit": True, "enable.auto.offset.store": False, "auto.commit.interval.ms": 1000})
        consumer = Consumer(config)
        producer = Producer(producer_config(self.kafka, f"framestream-bridge-{self.sink.name}"))
        consumer.subscribe([self.topics.alerts])
        log.info("bridge started", extra={"bridge": self.sink.name, "topic": self.topics.alerts})
        try:
            while not self.stop.is_set():
                message = consumer.poll(POLL_TIMEOUT_S)
                if message is None:
                    continue
                if message.error() is not None:
                    self._log_consumer_error(message.error())
                    continue
                try:
                    self._handle(message, producer)
                except RetryCancelled:
                    break  # stopped mid-retry: this alert's offset stays unstored, so it is read again
                consumer.store_offsets(message=message)
        finally:
            consumer.close()  # commits the offsets stored so far
            producer.flush(DEAD_LETTER_TIMEOUT_S)
            self.sink.close()
        log.info("bridge stopped", extra={"bridge": self.sink.name, **self.counts.__dict__})
        return self.counts

    def _handle(self, message: Message, producer: Producer) -> None:
        payload = message.value() or b""
        try:
            alert = Alert.model_validate_json(payload)
        except ValidationError as error:
            self._dead_letter(producer, message, f"not a valid alert: {error}", "ValidationError")
            return
        try:
            retry_sync(
                lambda: self.sink.deliver(alert, payload),
                policy=self.retry,
                transient=lambda error: isinstance(error, (ConnectionError, TimeoutError)),
                what=f"{self.sink.name} delivery of alert {alert.alert_id}",
                log=log,
                stop=self.stop,
                on_retry=lambda _error: RETRIED.labels(bridge=self.sink.name).inc(),
            )
        except DeliveryRefused as refused:
            self._dead_letter(
                producer, message, f"{self.sink.name} refused alert {alert.alert_id}: {refused}", "DeliveryRefused"
            )
            return
        self.counts.delivered += 1
        DELIVERED.labels(bridge=self.sink.name).inc()
        if self.on_delivered is not None:
            self.on_delivered(alert)

    def _dead_letter(self, producer: Producer, message: Message, reason: str, error_type: str) -> None:
        """Produce the dead letter and wait for its delivery before the offset is stored."""
        letter = DeadLetter(
            stage="bridge",
            reason=reason,
            error_type=error_type,
            source_topic=message.topic(),
            source_partition=message.partition(),
            source_offset=message.offset(),
            key=message.key(),
            headers=decode_headers(message.headers()),
            original=message.value() or b"",
            failed_at=utc_now(),
        )
        log.warning("dead letter: %s", reason[:500], extra={"bridge": self.sink.name, "offset": message.offset()})
        value = letter.model_dump_json().encode()
        retry_sync(
            lambda: _produce_and_wait(producer, self.topics.deadletter, message.key(), value),
            policy=self.retry,
            transient=lambda error: isinstance(error, (ConnectionError, TimeoutError)),
            what=f"{self.sink.name} dead letter",
            log=log,
            stop=self.stop,
        )
        self.counts.dead_letters += 1
        DEAD_LETTERED.labels(bridge=self.sink.name).inc()

    def _log_consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        log.warning("consumer error (librdkafka retries it): %s", error.str(), extra={"bridge": self.sink.name})


def _produce_and_wait(producer: Producer, topic: str, key: bytes | None, value: bytes) -> None:
    """Produce one record and wait for the broker's acknowledgement; a failure is transient."""
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    producer.produce(topic, value, key=key, on_delivery=delivered)
    if producer.flush(DEAD_LETTER_TIMEOUT_S) or failures:
        raise DeliveryUnavailable(f"record to {topic} not delivered: {failures or 'flush timed out'}")
