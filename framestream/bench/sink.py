"""``framestream bench sink``: the ClickHouse sink under a steady, real-time detection load.

Feeds ``ClickHouseSink`` the detections of ``cameras x fps`` frames a second, ``objects`` per
frame (default 8 x 30 x 5 = 1,200 detections/s), paced by the wall clock, plus an alert per
camera per second and a dead letter every 5 s. Prints, per table, rows/s, INSERTs/s (the
design target is about one per table per second) and INSERT latency p50/p95; then the sink's
CPU cost beside the CPU cost of producing the same detections with the in-process ONNX
detector on this machine (measured in the same run on a few real photos), and the sink's
share of the two.

CPU accounting: process CPU time over the load, minus the CPU the generator spends building
the messages (measured on its own thread). chDB runs inside this process, so the engine's
work (parsing, merges, the materialized views) is counted as the sink's; against a ClickHouse
server (FRAMESTREAM_CLICKHOUSE_DSN set) only the client side is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from framestream.bench.photos import load_photos
from framestream.bench.report import percentile, write_json
from framestream.settings import REPO_ROOT, Settings
from schemas import Alert, BoundingBox, DeadLetter, Detection, FrameDetections, ImageStats, StageTimings
from schemas.alerts import Severity
from streams.sinks.clickhouse import ClickHouseSink
from streams.sinks.clickhouse_db import chdb_dsn, connect, migrate

MODEL_PATH = REPO_ROOT / "triton_models" / "nanodet" / "1" / "model.onnx"
CLASSES = ("person", "car", "bicycle", "dog", "truck")


@dataclass
class LoadStats:
    wall_s: float = 0.0
    frames: int = 0
    cpu_total_s: float = 0.0
    cpu_generate_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    inserts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=dict)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="framestream bench sink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second per camera")
    parser.add_argument("--objects", type=int, default=5, help="detections per frame")
    parser.add_argument("--rate", type=float, help="detections/s; overrides --objects (objects = rate / frames/s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady load")
    parser.add_argument("--max-interval", type=float, default=1.0, help="sink max_interval_s")
    parser.add_argument("--max-rows", type=int, default=10_000, help="sink max_rows")
    parser.add_argument("--detector-frames", type=int, default=8, help="photos run through the ONNX detector")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.rate is not None:
        args.objects = max(0, round(args.rate / (args.cameras * args.fps)))
    return args


def make_frame(camera: int, seq: int, objects: int, now: datetime) -> FrameDetections:
    camera_id = f"bench-{camera}"
    detections = tuple(
        Detection(
            detection_id=f"{camera_id}:{seq}:{i}",
            class_id=i,
            class_name=CLASSES[i % len(CLASSES)],
            score=0.4 + 0.1 * (i % 6),
            box=BoundingBox(x1=10.0 * i, y1=20.0, x2=10.0 * i + 50, y2=120.0),
        )
        for i in range(objects)
    )
    return FrameDetections(
        event_id=f"{camera_id}:{seq}",
        camera_id=camera_id,
        frame_seq=seq,
        captured_at=now - timedelta(milliseconds=60),
        detected_at=now,
        width=1280,
        height=720,
        model_name="detector",
        model_version="1",
        detections=detections,
        stats=ImageStats(brightness=110.0, sharpness=250.0),
        timings=StageTimings(ingest_ms=4.0, queue_ms=6.0, batch_wait_ms=3.0, triton_ms=25.0),
    )


def side_messages(tick: int, args: argparse.Namespace, now: datetime) -> list[Alert | DeadLetter]:
    """An alert per camera per second and a dead letter every five seconds."""
    messages: list[Alert | DeadLetter] = []
    if tick % max(1, round(args.fps)) == 0:
        for camera in range(args.cameras):
            camera_id = f"bench-{camera}"
            messages.append(
                Alert(
                    alert_id=f"person:{camera_id}:{tick}",
                    rule_id="person",
                    severity=Severity.WARNING,
                    camera_id=camera_id,
                    frame_seq=tick,
                    event_id=f"{camera_id}:{tick}",
                    captured_at=now,
                    raised_at=now,
                    class_name="person",
                    score=0.9,
                    box=BoundingBox(x1=0, y1=0, x2=10, y2=10),
                    message="person detected",
                )
            )
    if tick % max(1, round(5 * args.fps)) == 0:
        messages.append(
            DeadLetter(
                stage="detect",
                reason="cannot decode image",
                error_type="DecodeError",
                source_topic="vision.frames.v1",
                source_partition=0,
                source_offset=tick,
                original=b"\x00" * 64,
                failed_at=now,
            )
        )
    return messages


def run_load(sink: ClickHouseSink, args: argparse.Namespace) -> LoadStats:
    stats = LoadStats()
    period = 1.0 / args.fps
    cpu_start, started = time.process_time(), time.perf_counter()
    tick = 0
    while time.perf_counter() - started < args.seconds:
        generate_start = time.thread_time()
        now = datetime.now(UTC)
        batch = [make_frame(camera, tick, args.objects, now) for camera in range(args.cameras)]
        batch += side_messages(tick, args, now)
        stats.cpu_generate_s += time.thread_time() - generate_start
        for message in batch:
            sink.add(message)
        stats.frames += args.cameras
        if sink.should_flush():
            record_flush(stats, sink)
        tick += 1
        time.sleep(max(0.0, started + tick * period - time.perf_counter()))
    record_flush(stats, sink)
    stats.wall_s = time.perf_counter() - started
    stats.cpu_total_s = time.process_time() - cpu_start
    return stats


def record_flush(stats: LoadStats, sink: ClickHouseSink) -> None:
    result = sink.flush()
    for table, rows in result.inserted.items():
        stats.rows[table] = stats.rows.get(table, 0) + rows
        stats.inserts[table] = stats.inserts.get(table, 0) + (1 if rows else 0)
        stats.seconds.setdefault(table, []).append(result.seconds[table])


def detector_cpu_per_frame(frames: int) -> tuple[float, int]:
    """CPU seconds per frame of the detect path (decode, letterbox, NanoDet, NMS) in-process, on real photos."""
    import onnxruntime as ort

    from processors.detector import Thresholds, detect_batch
    from processors.nanodet import INPUT_NAME, OUTPUT_NAMES

    session = ort.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    infer = lambda batch: dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}), strict=False))  # noqa: E731
    photos = [photo.data for photo in load_photos()]
    detect_batch(photos[:1], infer, [Thresholds()])  # warm-up: session initialisation is not per-frame cost
    images = [photos[i % len(photos)] for i in range(frames)]
    cpu_start = time.process_time()
    results = detect_batch(images, infer, [Thresholds()] * len(images), max_batch=1)
    cpu = time.process_time() - cpu_start
    return cpu / len(images), sum(len(result) for result in results if not isinstance(result, Exception))


def print_report(args: argparse.Namespace, stats: LoadStats, detect_cpu: float, detections_seen: int) -> None:
    frames_per_s = stats.frames / stats.wall_s
    print(
        f"load: {args.cameras} cameras x {args.fps:g} fps x {args.objects} objects = "
        f"{args.cameras * args.fps * args.objects:,.0f} detections/s target; "
        f"achieved {frames_per_s:,.1f} frames/s over {stats.wall_s:.1f} s"
    )
    print(f"{'table':<14}{'rows/s':>10}{'inserts/s':>11}{'insert p50 ms':>15}{'insert p95 ms':>15}")
    for table in ("frames", "detections", "alerts", "dead_letters"):
        if table not in stats.rows:
            continue
        timings = [seconds * 1000 for seconds in stats.seconds[table]]
        print(
            f"{table:<14}{stats.rows[table] / stats.wall_s:>10,.1f}{stats.inserts[table] / stats.wall_s:>11.2f}"
            f"{statistics.median(timings):>15.1f}{percentile(timings, 0.95):>15.1f}"
        )
    worst = max(stats.inserts.values()) / stats.wall_s
    print(f"max inserts/s of any table: {worst:.2f} ({'OK' if worst <= 1.1 else 'ABOVE'} the ~1/s target)")
    sink_cpu = stats.cpu_total_s - stats.cpu_generate_s
    sink_per_s = sink_cpu / stats.wall_s
    print(
        f"sink CPU: {sink_cpu:.2f} CPU-s in {stats.wall_s:.1f} s = {sink_per_s:.3f} CPU-s/s "
        f"({100 * sink_per_s:.1f}% of one core); "
        f"message generation, not counted: {stats.cpu_generate_s:.2f} CPU-s"
    )
    detect_per_s = detect_cpu * frames_per_s
    print(
        f"detector (in-process ONNX, {args.detector_frames} photos, {detections_seen} detections): "
        f"{detect_cpu * 1000:.1f} CPU-ms/frame -> {detect_per_s:.2f} CPU-s/s "
        f"at {frames_per_s:,.1f} frames/s"
    )
    share = sink_per_s / (sink_per_s + detect_per_s)
    print(
        f"sink share of pipeline CPU (sink + detect): {100 * share:.2f}%  "
        f"(sink {sink_per_s:.3f} vs detect {detect_per_s:.2f} CPU-s/s, "
        f"ratio 1:{detect_per_s / sink_per_s:,.0f})"
    )


def main(argv: list[str], settings: Settings) -> int:
    args = parse_args(argv)
    database = f"bench_sink_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="framestream-bench-") as scratch:
        clickhouse = settings.clickhouse
        if not clickhouse.dsn:  # never write benchmark rows into the real data directory
            clickhouse = clickhouse.model_copy(update={"dsn": chdb_dsn(Path(scratch))})
        client = connect(clickhouse, Path(scratch))
        try:
            migrate(client, database, clickhouse.ttl_days)
            sink = ClickHouseSink(client, database, max_rows=args.max_rows, max_interval_s=args.max_interval)
            stats = run_load(sink, args)
            client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        finally:
            client.close()
    detect_cpu, detections_seen = detector_cpu_per_frame(args.detector_frames)
    print_report(args, stats, detect_cpu, detections_seen)
    if args.json is not None:
        write_json(args.json, json_figures(args, stats, detect_cpu))
    return 0


def json_figures(args: argparse.Namespace, stats: LoadStats, detect_cpu: float) -> dict[str, object]:
    """The printed figures: per table rows/s, INSERTs/s and INSERT latency; the sink's CPU beside the detector's."""
    frames_per_s = stats.frames / stats.wall_s
    sink_per_s = (stats.cpu_total_s - stats.cpu_generate_s) / stats.wall_s
    detect_per_s = detect_cpu * frames_per_s
    tables = {}
    for table, rows in stats.rows.items():
        timings = [seconds * 1000 for seconds in stats.seconds[table]]
        tables[table] = {
            "rows_per_s": round(rows / stats.wall_s, 2),
            "inserts_per_s": round(stats.inserts[table] / stats.wall_s, 3),
            "insert_p50_ms": round(statistics.median(timings), 2),
            "insert_p95_ms": round(percentile(timings, 0.95), 2),
        }
    return {
        "bench": "sink",
        "cameras": args.cameras,
        "fps": args.fps,
        "objects": args.objects,
        "seconds": round(stats.wall_s, 2),
        "frames_per_s": round(frames_per_s, 2),
        "detections_per_s_target": args.cameras * args.fps * args.objects,
        "tables": tables,
        "max_inserts_per_s": round(max(stats.inserts.values()) / stats.wall_s, 3),
        "sink_cpu_s_per_s": round(sink_per_s, 4),
        "generate_cpu_s": round(stats.cpu_generate_s, 3),
        "detector_cpu_ms_per_frame": round(detect_cpu * 1000, 2),
        "detector_cpu_s_per_s": round(detect_per_s, 3),
        "sink_share_of_cpu": round(sink_per_s / (sink_per_s + detect_per_s), 5),
    }
