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
keeps up. Endpoints left empty in the settings are started here (the embedded
broker, tritonserver, chDB in a scratch directory), as ``framestream run`` does.
``--brokers kafka,tansu`` repeats the whole run on each embedded broker and prints
them side by side; ``--json PATH`` writes the figures.
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
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from framestream.bench.photos import PHOTOS, Photo, load_photos
from framestream.bench.progress import CommittedFrames, wait_until_stored
from framestream.bench.report import percentile, write_json
from framestream.child_process import WorkerProcess
from framestream.settings import REPO_ROOT, EmbeddedBroker, Settings
from schemas import FrameMeta
from streams.inference import DetectorClient
from streams.kafka_config import producer_config
from streams.topics import TopicNames, create_deployment_topics


@dataclass(frozen=True)
class RoundFigures:
    frames_per_s: float
    p50_ms: float
    p95_ms: float


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


class FrameFeeder:
    """Produces frames as ingest does (key camera id, JPEG value, FrameMeta headers), stamped at produce time."""

    def __init__(self, settings: Settings, photos: list[Photo], cameras: int) -> None:
        self.producer = Producer(producer_config(settings.kafka, client_id="bench-pipeline"))
        self.topic = TopicNames(settings.kafka.topic_prefix).frames
        self.photos = photos
        self.cameras = cameras

    def feed(self, label: str, frames: int, fps: float | None = None) -> float:
        """Produce ``frames`` frames of cameras ``<label>-cam<i>``; returns the epoch time of the first."""
        started, started_wall = time.perf_counter(), time.time()
        for index in range(frames):
            if fps:
                time.sleep(max(0.0, started + index / fps - time.perf_counter()))
            photo = self.photos[index % len(self.photos)]
            camera = f"{label}-cam{index % self.cameras}"
            meta = FrameMeta(
                camera_id=camera,
                frame_seq=index // self.cameras,
                captured_at=datetime.now(UTC),
                width=photo.width,
                height=photo.height,
            )
            self.producer.produce(self.topic, key=camera.encode(), value=photo.data, headers=meta.to_headers())
            self.producer.poll(0)
        self.producer.flush(30)
        return started_wall


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="framestream bench pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=200, help="frames per round (default 200)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=settings.triton.max_in_flight,
        help="Triton requests in flight, bare and in the detect stage (default: the settings')",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement; medians are printed")
    parser.add_argument("--cameras", type=int, default=4, help="cameras the frames are spread over (keys)")
    parser.add_argument(
        "--brokers",
        type=parse_brokers,
        default=None,
        help="embedded brokers to run on, one after the other, e.g. kafka,tansu (default: FRAMESTREAM_EMBEDDED_BROKER)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.concurrency < 1 or args.rounds < 1 or args.cameras < 1:
        parser.error("--frames, --concurrency, --rounds and --cameras must be at least 1")
    return args


def parse_brokers(text: str) -> list[EmbeddedBroker]:
    try:
        return [EmbeddedBroker(name.strip()) for name in text.split(",") if name.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{error}; choose from {', '.join(b.value for b in EmbeddedBroker)}"
        ) from error


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
    return (
        base
        | env
        | {
            "FRAMESTREAM_TRITON_MAX_IN_FLIGHT": str(concurrency),
            "FRAMESTREAM_CLICKHOUSE_PASSWORD": settings.clickhouse.password.get_secret_value(),
            "FRAMESTREAM_LOG_LEVEL": "WARNING",
        }
    )


def pipeline_round(
    worker: WorkerProcess,
    progress: CommittedFrames,
    feeder: FrameFeeder,
    label: str,
    frames: int,
    stored_before: float,
    fps: float | None = None,
) -> tuple[float, float]:
    """Feed one round and wait for its rows; returns (epoch time of the first produce, rows stored after it).
    The wait asks the broker, not the worker's /metrics (see ``progress``): scraping costs the worker CPU."""
    started = feeder.feed(label, frames, fps)
    wait_until_stored(worker, progress, stored_before + frames)
    return started, stored_before + frames


@dataclass(frozen=True)
class Latency:
    """Per round, from the frames table: e2e p50/p95 and where a frame's time went."""

    p50_ms: float
    p95_ms: float
    queue_ms: float  # produce -> picked up by the detect stage (median)
    triton_ms: float  # median
    detected_ms: float  # captured -> detections produced (median)
    detected_p95_ms: float
    triton_p95_ms: float
    last_stored_at: float  # epoch seconds: when the round's last row went in


LATENCY_SQL = """
SELECT quantileExact(0.5)(store_latency_ms), quantileExact(0.95)(store_latency_ms),
       quantileExact(0.5)(queue_ms), quantileExact(0.5)(triton_ms), quantileExact(0.5)(detect_latency_ms),
       quantileExact(0.95)(detect_latency_ms), quantileExact(0.95)(triton_ms), toUnixTimestamp64Milli(max(stored_at))
FROM {database}.frames WHERE startsWith(camera_id, {{label:String}})
"""


def latencies(settings: Settings, labels: list[str]) -> dict[str, Latency]:
    """Per round label, read once the worker has stopped (one process per chDB path)."""
    from streams.sinks.clickhouse_db import connect

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        sql = LATENCY_SQL.format(database=settings.clickhouse.database)
        rows = {label: client.query(sql, parameters={"label": f"{label}-"}).result_rows[0] for label in labels}
        return {
            label: Latency(*(float(value) for value in row[:-1]), float(row[-1]) / 1000.0)
            for label, row in rows.items()
        }
    finally:
        client.close()


@dataclass(frozen=True)
class BrokerRun:
    """One broker's measurements: bare Triton and pipeline rounds side by side, and the paced round."""

    broker: str
    bare: list[RoundFigures]
    piped: list[float]
    latency: dict[str, Latency]
    paced_fps: float
    rounds: list[str]

    def median_of(self, name: str) -> float:
        return statistics.median(getattr(self.latency[label], name) for label in self.rounds)

    def figures(self) -> dict[str, object]:
        """The JSON figures: medians over rounds, the ratio measured round by round."""
        bare_fps, pipeline_fps = statistics.median(b.frames_per_s for b in self.bare), statistics.median(self.piped)
        paced = self.latency["paced"]
        return {
            "broker": self.broker,
            "pipeline_fps": round(pipeline_fps, 2),
            "bare_fps": round(bare_fps, 2),
            "ratio": round(pipeline_fps / bare_fps, 3),
            "ratio_per_round": [round(p / b.frames_per_s, 3) for p, b in zip(self.piped, self.bare, strict=True)],
            "bare_p50_ms": round(statistics.median(b.p50_ms for b in self.bare), 1),
            "bare_p95_ms": round(statistics.median(b.p95_ms for b in self.bare), 1),
            "burst_stored_p50_ms": round(self.median_of("p50_ms"), 1),
            "burst_stored_p95_ms": round(self.median_of("p95_ms"), 1),
            "paced_fps": round(self.paced_fps, 2),
            "paced_stored_p50_ms": round(paced.p50_ms, 1),
            "paced_stored_p95_ms": round(paced.p95_ms, 1),
            "paced_detect_p95_ms": round(paced.detected_p95_ms, 1),
            "triton_p95_ms": round(paced.triton_p95_ms, 1),
        }


def run_bench(settings: Settings, env: dict[str, str], args: argparse.Namespace, broker: str) -> BrokerRun:
    photos = load_photos()
    create_deployment_topics(settings.kafka)
    worker = WorkerProcess(
        ["--stages", "detect,alert,persist"],
        worker_id="bench",
        log_path=settings.data_dir / "worker.log",
        env=worker_env(settings, env, args.concurrency),
    ).start()
    try:
        feeder = FrameFeeder(settings, photos, args.cameras)
        worker.wait_for_metric("framestream_assigned_partitions", settings.kafka.partitions, 120, topic=feeder.topic)
        progress = CommittedFrames(settings.kafka)
        _, stored = pipeline_round(worker, progress, feeder, "warmup", 2 * args.concurrency, 0)
        asyncio.run(bare_triton(settings.triton.url, photos, 2 * args.concurrency, args.concurrency))
        bare, starts = [], []
        for index in range(args.rounds):
            bare.append(asyncio.run(bare_triton(settings.triton.url, photos, args.frames, args.concurrency)))
            started, stored = pipeline_round(worker, progress, feeder, f"r{index}", args.frames, stored)
            starts.append(started)
        paced_fps = statistics.median(b.frames_per_s for b in bare) / 2
        pipeline_round(worker, progress, feeder, "paced", args.frames, stored, fps=paced_fps)
    finally:
        worker.stop()
    rounds = [f"r{index}" for index in range(args.rounds)]
    latency = latencies(settings, [*rounds, "paced"])
    # Throughput: first produce -> the round's last row stored (ClickHouse's own insert time).
    piped = [
        args.frames / (latency[label].last_stored_at - started) for label, started in zip(rounds, starts, strict=True)
    ]
    return BrokerRun(broker, bare, piped, latency, paced_fps, rounds)


def print_report(args: argparse.Namespace, run: BrokerRun) -> None:
    figures = run.figures()
    paced = run.latency["paced"]
    print(
        f"framestream bench pipeline on {run.broker}: {args.frames} frames/round, concurrency {args.concurrency}, "
        f"{args.rounds} rounds (medians), {args.cameras} cameras, photos from {PHOTOS.relative_to(REPO_ROOT)}"
    )
    print(f"{'':40}{'frames/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'queue':>9}{'triton':>9}{'detected':>9}")
    print(
        f"{'bare Triton (request latency)':40}{figures['bare_fps']:>9.1f}"
        f"{figures['bare_p50_ms']:>9.0f}{figures['bare_p95_ms']:>9.0f}"
    )
    print(
        f"{'pipeline to ClickHouse, burst (e2e)':40}{figures['pipeline_fps']:>9.1f}{run.median_of('p50_ms'):>9.0f}"
        f"{run.median_of('p95_ms'):>9.0f}{run.median_of('queue_ms'):>9.0f}{run.median_of('triton_ms'):>9.0f}"
        f"{run.median_of('detected_ms'):>9.0f}"
    )
    print(
        f"{f'pipeline, paced at {run.paced_fps:.1f} frames/s (e2e)':40}{'':>9}{paced.p50_ms:>9.0f}"
        f"{paced.p95_ms:>9.0f}{paced.queue_ms:>9.0f}{paced.triton_ms:>9.0f}{paced.detected_ms:>9.0f}"
    )
    print(
        f"pipeline / bare Triton throughput: {figures['ratio']:.2f}   "
        f"(per round: {', '.join(f'{ratio:.2f}' for ratio in figures['ratio_per_round'])})"
    )  # type: ignore[union-attr]
    print(
        f"paced p95: captured -> detections {paced.detected_p95_ms:.0f} ms (Triton p95 {paced.triton_p95_ms:.0f} ms),"
        f" captured -> stored {paced.p95_ms:.0f} ms"
    )
    print(
        "e2e: captured_at -> row stored in ClickHouse. queue: produce -> detect pickup; detected: captured_at ->\n"
        "detections produced (medians, ms). Under a burst the e2e latency is mostly the queue before Triton."
    )


def print_comparison(runs: list[BrokerRun]) -> None:
    """Brokers side by side, each against the bare Triton measured in its own rounds."""
    print("\nbrokers side by side (each ratio against bare Triton measured in the same run):")
    print(
        f"{'broker':16}{'pipeline f/s':>14}{'bare f/s':>10}{'ratio':>8}{'paced p95 stored':>18}{'paced p95 detect':>18}"
    )
    for run in runs:
        f = run.figures()
        print(
            f"{run.broker:16}{f['pipeline_fps']:>14.1f}{f['bare_fps']:>10.1f}{f['ratio']:>8.2f}"
            f"{f['paced_stored_p95_ms']:>16.0f}ms{f['paced_detect_p95_ms']:>16.0f}ms"
        )


def main(argv: list[str], settings: Settings) -> int:
    args = parse_args(argv, settings)
    brokers = args.brokers or [settings.embedded_broker]
    runs = [run_on_broker(settings, args, broker) for broker in brokers]
    if len(runs) > 1:
        print_comparison(runs)
    if args.json is not None:
        figures = {
            "bench": "pipeline",
            "frames": args.frames,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            **runs[0].figures(),
            "brokers": [run.figures() for run in runs],
        }
        write_json(args.json, figures)
    return 0


def run_on_broker(settings: Settings, args: argparse.Namespace, broker: EmbeddedBroker) -> BrokerRun:
    """The whole bench on one embedded broker (a configured bootstrap server is used as it is)."""
    from framestream.services.stack import EmbeddedStack

    scratch = settings.data_dir / "bench" / f"pipeline-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    bench = bench_settings(settings, scratch).model_copy(update={"embedded_broker": broker})
    try:
        with EmbeddedStack(bench) as stack:
            name = stack.broker.kind.value if stack.broker else f"configured ({bench.kafka.bootstrap_servers})"
            run = run_bench(stack.settings, stack.env(), args, name)
    except BaseException:
        print(f"bench failed; the worker's log and data are kept in {scratch}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if bench.clickhouse.dsn:
            _drop_database(bench)
    print_report(args, run)
    return run


def _drop_database(settings: Settings) -> None:
    """Server only: the bench's database goes away with its run (chDB's goes with the scratch dir)."""
    from streams.sinks.clickhouse_db import connect

    client = connect(settings.clickhouse, settings.data_dir)
    try:
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse.database}")
    finally:
        client.close()
