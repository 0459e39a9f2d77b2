"""Reading one frame back from ``vision.frames.v1`` by partition and offset.

The detections topic carries no image: the detect stage notes where each frame lies
(``FrameDetections.frame_partition`` / ``frame_offset``), and the stages that need the JPEG
later (hard-example capture, alert snapshots) read that one record back with a group-less,
``assign``-only consumer. A frame already removed by retention, or another frame at that place
(a recreated topic), reads as None; a broker that is away raises ``FrameFetchError`` (transient).
"""

from __future__ import annotations

import logging

from schemas import FrameMeta
from streams.kafka_config import KafkaSettings, consumer_config

log = logging.getLogger(__name__)


class FrameFetchError(RuntimeError):
    """The frames topic could not be read for now (broker away): transient, retried."""


class KafkaFrameFetcher:
    """Reads one frame record back by partition and offset. Blocking: call it from one thread."""

    def __init__(self, kafka: KafkaSettings, topic: str, timeout_s: float) -> None:
        config = consumer_config(kafka, group_id=f"{kafka.topic_prefix}framestream-frame-reader")
        config["auto.offset.reset"] = "error"  # an offset retention removed is an error, not another frame
        config["queued.min.messages"] = 1  # one frame is wanted, not a prefetched queue of them
        self.config = config
        self.topic = topic
        self.timeout_s = timeout_s
        self.consumer = None

    def fetch(self, partition: int, offset: int, event_id: str) -> bytes | None:
        """The JPEG of frame ``event_id`` at that place, or None when it is gone (or is another frame)."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        if self.consumer is None:
            self.consumer = Consumer(self.config)
        try:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=self.timeout_s
            )
        except KafkaException as error:
            raise FrameFetchError(f"watermarks of {self.topic}[{partition}]: {error}") from error
        if not low <= offset < high:
            return None
        self.consumer.assign([TopicPartition(self.topic, partition, offset)])
        message = self.consumer.poll(self.timeout_s)
        if message is None:
            raise FrameFetchError(f"no record from {self.topic}[{partition}]@{offset} within {self.timeout_s} s")
        if message.error() is not None:
            log.warning("frame record unreadable", extra={"event_id": event_id, "error": str(message.error())})
            return None
        try:
            found = FrameMeta.from_headers(message.headers()).frame_id
        except ValueError:
            found = None
        return message.value() if found == event_id and message.offset() == offset else None

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
