"""``framestream bench pipeline``: frames/s through the whole pipeline beside bare Triton.

In one run, on the same JPEGs (tests/data/photos) and at the same concurrency K:

- bare Triton: K closed-loop clients send N frames to the ``detector`` model;
- pipeline: N frames produced to the frames topic at once, through a real
  ``framestream worker`` (detect, alert, persist; K requests in flight) until
  their rows are in ClickHouse. Throughput is N over first produce -> last row
  stored; latency is ``captured_at`` -> ``stored_at`` (ClickHouse's insert
  time) per frame, which under a burst is mostly queueing.

Rounds alternate the two; medians are printed, with the ratio. A last, paced
round produces at half the bare throughput, for the latency of a pipeline that
keeps up. Endpoints left empty in the settings are started here (Tansu,
tritonserver, chDB in a scratch directory), as ``framestream run`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
from confluent_kafka import Producer

from streams.topics import create_deployment_topics
from framestream.services.probes import free_port, metric_value, metrics_text
from framestream.settings import REPO_ROOT, Settings
from schemas import FrameMeta
from streams.inference import DetectorClient
from streams.kafka_config import producer_config
from streams.topics import TopicNames

PHOTOS = REPO_ROOT / "tests" / "data" / "photos"
MAX_FRAME_BYTES = 900_000  # under librdkafka's 1 MB message.max.bytes


@dataclass(frozen=True)
class Photo:
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class RoundFigures:
    frames_per_s: float
    p50_ms: float
    p95_ms: float


def load_photos(folder: Path = PHOTOS) -> list[Photo]:
    photos = []
    for path in sorted(folder.glob("*.jpg")):
        image = cv2.imread(str(path))
        data = path.read_bytes()
        if len(data) > MAX_FRAME_BYTES:
            data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
        photos.append(Photo(data, image.shape[1], image.shape[0]))
    return photos


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def bare_triton(url: str, photos: list[Photo], frames: int, concurrency: int) -> RoundFigures:
    """K closed-loop clients sharing ``frames`` requests, one image each."""
    latencies: list[float] = []
    async with DetectorClient(url, max_in_flight=concurrency) as client:
        await client.wait_ready(60)
        queue = list(range(frames))

        async def client_loop() -> None:
            while queue:
                index = queue.pop()
                started = time.perf_counter()
                await client.detect(photos[index % len(photos)].data)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return RoundFigures(frames / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000)


class BenchWorker:
    """The real ``framestream worker`` in a subprocess, observed through its /metrics."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.metrics_port = free_port()
        command = [sys.executable, "-m", "framestream.cli", "worker", "--stages", "detect,alert,persist",
                   "--metrics-port", str(self.metrics_port), "--worker-id", "bench"]  # fmt: skip
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(metrics_text(self.metrics_port), name, **labels)

    def wait_for(self, name: str, at_least: float, timeout_s: float, **labels: str) -> float:
        """Wait until the metric reaches ``at_least``; returns the time.perf_counter() it was seen."""
        deadline = time.monotonic() + timeout_s
        while self.metric(name, **labels) < at_least:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.process.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {name}{labels} >= {at_least}; see {self.log_path}")
            time.sleep(0.05)
        return time.perf_counter()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class FrameFeeder:
    """Produces frames as ingest does (key camera id, JPEG value, FrameMeta headers), stamped at produce time."""

    def __init__(self, settings: Settings, photos: list[Photo], cameras: int) -> None:
        self.producer = Producer(producer_config(settings.kafka, client_id="bench-pipeline"))
        self.topic = TopicNames(settings.kafka.topic_prefix).frames
        self.photos = photos
        self.cameras = cameras

    def feed(self, label: str, frames: int, fps: float | None = None) -> float:
        """Produce ``frames`` frames of cameras ``<label>-cam<i>``; returns perf_counter() at the first."""
        started = time.perf_counter()
        for index in range(frames):
            if fps:
                time.sleep(max(0.0, started + index / fps - time.perf_counter()))
            photo = self.photos[index % len(self.photos)]
            camera = f"{label}-cam{index % self.cameras}"
            meta = FrameMeta(camera_id=camera, frame_seq=index // self.cameras, captured_at=datetime.now(timezone.utc),
                             width=photo.width, height=photo.height)  # fmt: skip
            self.producer.produce(self.topic, key=camera.encode(), value=photo.data, headers=meta.to_headers())
            self.producer.poll(0)
        self.producer.flush(30)
        return started


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="framestream bench pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--frames", type=int, default=200, help="frames per round (default 200)")
    parser.add_argument("--concurrency", type=int, default=settings.triton.max_in_flight,
                        help="Triton requests in flight, bare and in the detect stage (default: the settings')")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement; medians are printed")
    parser.add_argument("--cameras", type=int, default=4, help="cameras the frames are spread over (keys)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.concurrency < 1 or args.rounds < 1 or args.cameras < 1:
        parser.error("--frames, --concurrency, --rounds and --cameras must be at least 1")
    return args


def bench_settings(settings: Settings, scratch: Path) -> Settings:
    """Fresh topics, a scratch data dir (chDB, faust state) and, on a server, a fresh database."""
    run_id = uuid.uuid4().hex[:8]
    kafka = settings.kafka.model_copy(update={"topic_prefix": f"bench-{run_id}."})
    clickhouse = settings.clickhouse
    if clickhouse.dsn:
        clickhouse = clickhouse.model_copy(update={"database": f"bench_{run_id}"})
    return settings.model_copy(update={"kafka": kafka, "clickhouse": clickhouse, "data_dir": scratch})


def worker_env(settings: Settings, env: dict[str, str], concurrency: int) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("FRAMESTREAM_")}
    return base | env | {
        "FRAMESTREAM_TRITON_MAX_IN_FLIGHT": str(concurrency),
        "FRAMESTREAM_CLICKHOUSE_PASSWORD": settings.clickhouse.password.get_secret_value(),
        "FRAMESTREAM_LOG_LEVEL": "WARNING",
    }


def pipeline_round(worker: BenchWorker, feeder: FrameFeeder, label: str, frames: int, stored_before: float,
                   fps: float | None = None) -> tuple[float, float]:  # fmt: skip
    """Feed one round; returns (frames/s to ClickHouse, rows stored after it)."""
    started = feeder.feed(label, frames, fps)
    done = worker.wait_for("framestream_sink_rows_inserted_total", stored_before + frames, 600, table="frames")
    return frames / (done - started), stored_before + frames


@dataclass(frozen=True)
class Latency:
    """Per round, from the frames table: e2e p50/p95 and the medians of where a frame's time went."""

    p50_ms: float
    p95_ms: float
    queue_ms: float  # produce -> picked up by the detect stage
    triton_ms: float
    detected_ms: float  # captured -> detections produced


LATENCY_SQL = """
SELECT quantileExact(0.5)(store_latency_ms), quantileExact(0.95)(store_latency_ms),
       quantileExact(0.5)(queue_ms), quantileExact(0.5)(triton_ms), quantileExact(0.5)(detect_latency_ms)
FROM {database}.frames WHERE startsWith(camera_id, {{label:String}})
"""


def latencies(settings: Settings, labels: list[str]) -> dict[str, Latency]:
    """Per round label, read once the worker has stopped (one process per chDB path)."""
    from streams.sinks.clickhouse_db import connect

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        sql = LATENCY_SQL.format(database=settings.clickhouse.database)
        rows = {label: client.query(sql, parameters={"label": f"{label}-"}).result_rows[0] for label in labels}
        return {label: Latency(*(float(value) for value in row)) for label, row in rows.items()}
    finally:
        client.close()


def run_bench(settings: Settings, env: dict[str, str], args: argparse.Namespace) -> None:
    photos = load_photos()
    create_deployment_topics(settings.kafka)
    worker = BenchWorker(worker_env(settings, env, args.concurrency), settings.data_dir / "worker.log")
    try:
        feeder = FrameFeeder(settings, photos, args.cameras)
        worker.wait_for("framestream_assigned_partitions", 4, 120, topic=feeder.topic)
        _, stored = pipeline_round(worker, feeder, "warmup", 2 * args.concurrency, 0)
        asyncio.run(bare_triton(settings.triton.url, photos, 2 * args.concurrency, args.concurrency))
        bare, piped = [], []
        for index in range(args.rounds):
            bare.append(asyncio.run(bare_triton(settings.triton.url, photos, args.frames, args.concurrency)))
            rate, stored = pipeline_round(worker, feeder, f"r{index}", args.frames, stored)
            piped.append(rate)
        paced_fps = statistics.median(b.frames_per_s for b in bare) / 2
        pipeline_round(worker, feeder, "paced", args.frames, stored, fps=paced_fps)
    finally:
        worker.stop()
    rounds = [f"r{index}" for index in range(args.rounds)]
    print_report(args, bare, piped, latencies(settings, [*rounds, "paced"]), paced_fps, rounds)


def print_report(args: argparse.Namespace, bare: list[RoundFigures], piped: list[float],
                 latency: dict[str, Latency], paced_fps: float, rounds: list[str]) -> None:  # fmt: skip
    def median_of(field: str) -> float:
        return statistics.median(getattr(latency[label], field) for label in rounds)

    bare_rate, pipe_rate = statistics.median(b.frames_per_s for b in bare), statistics.median(piped)
    paced = latency["paced"]
    print(f"framestream bench pipeline: {args.frames} frames/round, concurrency {args.concurrency}, "
          f"{args.rounds} rounds (medians), {args.cameras} cameras, photos from {PHOTOS.relative_to(REPO_ROOT)}")
    print(f"{'':40}{'frames/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'queue':>9}{'triton':>9}{'detected':>9}")
    print(f"{'bare Triton (request latency)':40}{bare_rate:>9.1f}"
          f"{statistics.median(b.p50_ms for b in bare):>9.0f}{statistics.median(b.p95_ms for b in bare):>9.0f}")
    print(f"{'pipeline to ClickHouse, burst (e2e)':40}{pipe_rate:>9.1f}{median_of('p50_ms'):>9.0f}"
          f"{median_of('p95_ms'):>9.0f}{median_of('queue_ms'):>9.0f}{median_of('triton_ms'):>9.0f}"
          f"{median_of('detected_ms'):>9.0f}")
    print(f"{f'pipeline, paced at {paced_fps:.1f} frames/s (e2e)':40}{'':>9}{paced.p50_ms:>9.0f}{paced.p95_ms:>9.0f}"
          f"{paced.queue_ms:>9.0f}{paced.triton_ms:>9.0f}{paced.detected_ms:>9.0f}")
    print(f"pipeline / bare Triton throughput: {pipe_rate / bare_rate:.2f}   "
          f"(per round: {', '.join(f'{p / b.frames_per_s:.2f}' for p, b in zip(piped, bare, strict=True))})")
    print("e2e: captured_at -> row stored in ClickHouse. queue: produce -> detect pickup; detected: captured_at ->\n"
          "detections produced (medians, ms). Under a burst the e2e latency is mostly the queue before Triton.")


def main(argv: list[str], settings: Settings) -> int:
    from framestream.services.stack import EmbeddedStack

    args = parse_args(argv, settings)
    scratch = settings.data_dir / "bench" / f"pipeline-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    bench = bench_settings(settings, scratch)
    try:
        with EmbeddedStack(bench) as stack:
            run_bench(stack.settings, stack.env(), args)
    except BaseException:
        print(f"bench failed; the worker's log and data are kept in {scratch}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if bench.clickhouse.dsn:
            _drop_database(bench)
    return 0


def _drop_database(settings: Settings) -> None:
    """Server only: the bench's database goes away with its run (chDB's goes with the scratch dir)."""
    from streams.sinks.clickhouse_db import connect

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse.database}")
    finally:
        client.close()
