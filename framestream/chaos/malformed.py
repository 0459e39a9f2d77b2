"""Bursts of garbage records with recognisable keys (``chaos-bad-<topic>-<n>``), so that the end
check can tell every malformed record from the pipeline's own and find each one's dead letters.

    burst = MalformedProducer(kafka, topics, random.Random(1))
    keys = burst.send("frames", 5)     # the keys the broker acknowledged
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer

from schemas import FrameMeta
from streams.kafka_config import KafkaSettings, producer_config
from streams.topics import TopicNames

KEY_PREFIX = "chaos-bad-"
# Which stages read each topic the harness corrupts, so which dead letters one bad record gives.
DEAD_LETTER_STAGES = {"frames": ("detect",), "detections": ("alert", "persist")}


def bad_frame(rng: random.Random, key: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Not a frame: no headers, headers that do not validate, or valid headers over bytes that are no image."""
    meta = FrameMeta(camera_id=key, frame_seq=rng.randrange(10**6), captured_at=datetime.now(UTC), width=64, height=48)
    garbage = b"\x00chaos" + rng.randbytes(rng.randrange(0, 2048))
    variant = rng.randrange(4)
    if variant == 0:
        return garbage, []
    headers = meta.to_headers()
    if variant == 1:
        name, _ = headers[rng.randrange(len(headers))]
        headers = [(n, b"not-a-value" if n == name else v) for n, v in headers]
        return garbage, headers
    if variant == 2:
        return b"", headers
    return garbage, headers


def bad_detections(rng: random.Random, key: str) -> bytes:
    """Not a FrameDetections: not JSON, not an object, missing or mistyped fields, invalid UTF-8."""
    variants = [
        b"not json {",
        b"[]",
        b"{}",
        json.dumps({"schema_version": 1, "camera_id": key, "frame_seq": "x"}).encode(),
        b"\xff\xfe" + rng.randbytes(rng.randrange(1, 256)),
    ]
    return variants[rng.randrange(len(variants))]


class MalformedProducer:
    def __init__(self, kafka: KafkaSettings, topics: TopicNames, rng: random.Random) -> None:
        self.topics = {"frames": topics.frames, "detections": topics.detections}
        self.rng = rng
        self.producer = Producer({**producer_config(kafka, client_id="chaos-malformed"), "log_level": 2})
        self.sent = 0
        self.delivered: dict[str, str] = {}  # key -> harness topic name ("frames" | "detections")
        self.failed: list[str] = []
        self.sent_keys: set[str] = set()

    def send(self, topic: str, count: int) -> None:
        """Produce ``count`` bad records to ``topic``; their delivery reports come in ``poll()``."""
        for _ in range(count):
            self.sent += 1
            key = f"{KEY_PREFIX}{topic}-{self.sent}"
            self.sent_keys.add(key)
            headers: list[tuple[str, bytes]] = []
            if topic == "frames":
                value, headers = bad_frame(self.rng, key)
            else:
                value = bad_detections(self.rng, key)
            self.producer.produce(
                self.topics[topic],
                key=key.encode(),
                value=value,
                headers=headers,
                on_delivery=lambda error, message, key=key, topic=topic: self._delivered(key, topic, error, message),
            )
        self.producer.poll(0)

    def poll(self) -> None:
        self.producer.poll(0)

    def _delivered(self, key: str, topic: str, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered[key] = topic
        else:
            self.failed.append(key)

    def close(self) -> None:
        """Wait for every delivery report; a record still unreported is counted as failed."""
        self.producer.flush(120)
        self.failed.extend(self.sent_keys - set(self.delivered) - set(self.failed))
