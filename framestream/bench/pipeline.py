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
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
from confluent_kafka import Producer

from framestream.bench.photos import PHOTOS, Photo, load_photos
from framestream.child_process import WorkerProcess
from framestream.settings import REPO_ROOT, Settings
from schemas import FrameMeta
from streams.inference import DetectorClient
from streams.kafka_config import producer_config
from streams.topics import TopicNames, create_deployment_topics



@dataclass(frozen=True)
class RoundFigures:
    frames_per_s: float
    p50_ms: float
    p95_ms: float


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


def worker_env(settings: Settings, env: dict[str, str], concurrency: int) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("FRAMESTREAM_")}
    return base | env | {
        "FRAMESTREAM_TRITON_MAX_IN_FLIGHT": str(concurrency),
        "FRAMESTREAM_CLICKHOUSE_PASSWORD": settings.clickhouse.password.get_secret_value(),
        "FRAMESTREAM_LOG_LEVEL": "WARNING",
    }


def pipeline_round(worker: WorkerProcess, feeder: FrameFeeder, label: str, frames: int, stored_before: float,
                   fps: float | None = None) -> tuple[float, float]:  # fmt: skip
    """Feed one round; returns (frames/s to ClickHouse, rows stored after it)."""
    started = feeder.feed(label, frames, fps)
    done = worker.wait_for_metric("framestream_sink_rows_inserted_total", stored_before + frames, 600, table="frames")
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
    worker = WorkerProcess(["--stages", "detect,alert,persist"], worker_id="bench", log_path=settings.data_dir / "worker.log",
                           env=worker_env(settings, env, args.concurrency)).start()  # fmt: skip
    try:
        feeder = FrameFeeder(settings, photos, args.cameras)
        worker.wait_for_metric("framestream_assigned_partitions", settings.kafka.partitions, 120, topic=feeder.topic)
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
