"""The benchmarks' frame producer, in a process of its own so its CPU is counted on its own.

It produces already-encoded JPEGs as ingest does (key = camera id, value = JPEG bytes,
headers = ``FrameMeta``, the ingest producer's librdkafka configuration), stamped with
``captured_at`` at produce time, as fast as it can or at a given rate, waits for every
delivery report, and writes what it measured as JSON: wall-clock start and end, its own
CPU seconds over the feed (librdkafka's threads included) and produce -> ack latencies.

    python -m framestream.bench.feeder --frames-dir DIR --label r0 --count 3000 --out r0.json
    # Kafka from FRAMESTREAM_KAFKA_* (as a worker reads it)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from schemas import FrameMeta
from streams.kafka_config import KafkaSettings, producer_config
from streams.topics import TopicNames

FRAME_NAME = "frame-{index:03d}-{width}x{height}.jpg"


@dataclass(frozen=True)
class FeedResult:
    """What a feed measured; ``started``/``finished`` are epoch seconds (comparable across processes)."""

    frames: int
    started: float
    finished: float
    cpu_s: float
    ack_ms: list[float] = field(repr=False)

    def to_json(self) -> dict[str, object]:
        acks = sorted(self.ack_ms)
        return {
            "frames": self.frames,
            "started": self.started,
            "finished": self.finished,
            "cpu_s": self.cpu_s,
            "ack_p50_ms": statistics.median(acks) if acks else None,
            "ack_mean_ms": statistics.fmean(acks) if acks else None,
            "ack_p95_ms": acks[min(len(acks) - 1, int(0.95 * len(acks)))] if acks else None,
        }


def save_frames(frames: list[tuple[bytes, int, int]], folder: Path) -> None:
    """Write (jpeg, width, height) frames where ``load_frames`` finds them again."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (data, width, height) in enumerate(frames):
        (folder / FRAME_NAME.format(index=index, width=width, height=height)).write_bytes(data)


def load_frames(folder: Path) -> list[tuple[bytes, int, int]]:
    frames = []
    for path in sorted(folder.glob("frame-*.jpg")):
        width, height = (int(value) for value in path.stem.rsplit("-", 1)[1].split("x"))
        frames.append((path.read_bytes(), width, height))
    if not frames:
        raise FileNotFoundError(f"no frame-*.jpg in {folder}")
    return frames


def feed(
    producer: Producer,
    topic: str,
    frames: list[tuple[bytes, int, int]],
    label: str,
    count: int,
    cameras: int,
    fps: float | None,
) -> FeedResult:
    """Produce ``count`` frames over ``cameras`` cameras ``<label>-cam<i>``; wait for every ack."""
    acks: list[float] = []
    failures: list[str] = []

    def delivered(sent_at: float, error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))
        acks.append((time.perf_counter() - sent_at) * 1000.0)

    cpu_start, started, wall_start = time.process_time(), time.perf_counter(), time.time()
    for index in range(count):
        if fps:
            time.sleep(max(0.0, started + index / fps - time.perf_counter()))
        data, width, height = frames[index % len(frames)]
        camera = f"{label}-cam{index % cameras}"
        meta = FrameMeta(
            camera_id=camera, frame_seq=index // cameras, captured_at=datetime.now(UTC), width=width, height=height
        )
        sent_at = time.perf_counter()
        while True:
            try:
                producer.produce(
                    topic,
                    key=camera.encode(),
                    value=data,
                    headers=meta.to_headers(),
                    on_delivery=lambda error, message, sent_at=sent_at: delivered(sent_at, error, message),
                )
                break
            except BufferError:  # the local queue is full: serve delivery reports, then try again
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(120) or failures:
        raise RuntimeError(f"{len(failures)} deliveries failed (first: {failures[:1]}) or timed out")
    return FeedResult(count, wall_start, time.time(), time.process_time() - cpu_start, acks)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m framestream.bench.feeder", description=__doc__.splitlines()[0])
    parser.add_argument("--frames-dir", type=Path, required=True)
    parser.add_argument("--label", required=True, help="camera ids are <label>-cam<i>")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=float, default=None, help="pace at this rate (default: as fast as possible)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    kafka = KafkaSettings()
    producer = Producer(producer_config(kafka, client_id=f"bench-feeder-{os.getpid()}"))
    producer.list_topics(timeout=30)  # connected before the clock starts
    result = feed(
        producer,
        TopicNames(kafka.topic_prefix).frames,
        load_frames(args.frames_dir),
        args.label,
        args.count,
        args.cameras,
        args.fps,
    )
    args.out.write_text(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
