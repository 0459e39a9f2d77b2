"""Follows the demo's topics from the side (its own consumer, no group) to report progress
and to keep a few frames for the annotated output."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import ValidationError

from framestream.settings import Settings
from schemas import DeadLetter, FrameDetections
from streams.kafka_config import consumer_config
from streams.topics import TopicNames


@dataclass(frozen=True)
class Counts:
    frames: int
    detections: int
    alerts: int
    dead_letters: int
    detect_dead_letters: int


class TopicFollower:
    def __init__(self, settings: Settings, keep_frames: int) -> None:
        self._topics = TopicNames(settings.kafka.topic_prefix)
        self._consumer = Consumer(consumer_config(settings.kafka, group_id="framestream-demo-follower"))
        self._keep_frames = keep_frames
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="topic-follower", daemon=True)
        self._counts = {"frames": 0, "detections": 0, "alerts": 0, "dead_letters": 0, "detect_dead_letters": 0}
        self.jpegs: dict[str, bytes] = {}
        self.detections: dict[str, FrameDetections] = {}

    def start(self) -> None:
        names = [self._topics.frames, self._topics.detections, self._topics.alerts, self._topics.deadletter]
        metadata = self._consumer.list_topics(timeout=30)
        partitions = [
            TopicPartition(name, partition, OFFSET_BEGINNING)
            for name in names
            for partition in metadata.topics[name].partitions
        ]
        self._consumer.assign(partitions)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def counts(self) -> Counts:
        with self._lock:
            return Counts(**self._counts)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(num_messages=500, timeout=0.2):
                if message.error() is None:
                    self._handle(message.topic(), message.value() or b"", dict(message.headers() or []))

    def _handle(self, topic: str, value: bytes, headers: dict[str, bytes]) -> None:
        with self._lock:
            if topic == self._topics.frames:
                self._counts["frames"] += 1
                if len(self.jpegs) < self._keep_frames:
                    camera = headers.get("fs-camera-id", b"").decode(errors="replace")
                    seq = headers.get("fs-frame-seq", b"").decode(errors="replace")
                    self.jpegs[f"{camera}:{seq}"] = value
            elif topic == self._topics.detections:
                self._counts["detections"] += 1
                try:
                    frame = FrameDetections.model_validate_json(value)
                except ValidationError:
                    return
                if frame.event_id in self.jpegs:
                    self.detections[frame.event_id] = frame
            elif topic == self._topics.alerts:
                self._counts["alerts"] += 1
            elif topic == self._topics.deadletter:
                self._counts["dead_letters"] += 1
                try:
                    if DeadLetter.model_validate_json(value).stage == "detect":
                        self._counts["detect_dead_letters"] += 1
                except ValidationError:
                    pass
