"""``framestream ingest``: run the cameras of a cameras file into the frames topic."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from framestream.settings import Settings
from streams.config_files import ConfigFileError

if TYPE_CHECKING:
    from schemas.camera_health import CameraHealth
    from streams.ingest.cameras import Camera
    from streams.ingest.producer import CameraProgress

PROGRESS_EVERY_S = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ingest", help="produce camera frames to Kafka (cameras from a YAML file)")
    parser.add_argument("--cameras", type=Path, default=None, help="cameras YAML file (default: settings.cameras_file)")
    parser.add_argument("--max-frames", type=_positive_int, default=None, help="stop each camera after N frames")
    parser.add_argument("--duration", type=_positive_float, default=None, help="stop after S seconds")
    parser.add_argument(
        "--seq-start",
        type=_non_negative_int,
        default=None,
        help="first frame_seq of every camera (default: now in epoch milliseconds, so that frame ids "
        "of a new run never repeat an earlier run's: at most 120 fps < 1000 ids per second)",
    )
    parser.add_argument(
        "--health-every",
        type=_positive_float,
        default=10.0,
        help="seconds between the health reports of each camera on the camera-health topic (default 10)",
    )
    parser.add_argument("--metrics-port", type=_non_negative_int, default=None, help="serve Prometheus metrics here")
    parser.add_argument("--no-create-topics", action="store_true", help="do not create missing topics first")
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    kafka = settings.kafka
    if not kafka.bootstrap_servers.strip():
        print(
            "framestream ingest: no Kafka broker configured. Start the embedded one with "
            "`framestream services`, or set FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS=host:port.",
            file=sys.stderr,
        )
        return 2
    from streams.ingest.cameras import load_cameras

    try:
        cameras = load_cameras(args.cameras or settings.cameras_file)
    except ConfigFileError as error:
        print(f"framestream ingest: invalid cameras file:\n{error}", file=sys.stderr)
        return 2
    return _ingest(args, settings, cameras)


def _ingest(args: argparse.Namespace, settings: Settings, cameras: list[Camera]) -> int:
    from streams.ingest.producer import CameraIngest, IngestError
    from streams.topics import TopicError, TopicNames, create_topics

    kafka = settings.kafka
    topics = TopicNames(prefix=kafka.topic_prefix)
    try:
        if not args.no_create_topics:
            create_topics(
                kafka,  # the settings, not the bare address: a secured broker needs the credentials
                topics,
                partitions=kafka.partitions,
                retention_ms=kafka.retention_ms,
                replication_factor=kafka.replication_factor,
            )
    except TopicError as error:
        print(f"framestream ingest: {error}", file=sys.stderr)
        return 1
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    seq_start = args.seq_start if args.seq_start is not None else int(time.time() * 1000)
    ingest = CameraIngest(
        cameras,
        kafka,
        topics,
        first_seq=seq_start,
        max_frames=args.max_frames,
        duration_s=args.duration,
        run_id=str(seq_start),
        health_every_s=args.health_every,
    )
    print(f"ingesting {len(cameras)} cameras into {topics.frames} on {kafka.bootstrap_servers}", end=", ")
    print(f"frame_seq from {seq_start}")
    stop = _stop_on_signals()
    ingest.start()
    try:
        while not ingest.wait(timeout_s=PROGRESS_EVERY_S) and not stop.is_set():
            print(_progress_line(ingest.progress(), ingest.health.latest), flush=True)
        progress = ingest.stop()
    except IngestError as error:
        print(f"framestream ingest: {error}", file=sys.stderr)
        return 1
    print(_summary(progress, ingest.health.outages()))
    return 1 if any(p.error for p in progress.values()) or ingest.fatal_error else 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _progress_line(progress: dict[str, CameraProgress], health: Mapping[str, CameraHealth]) -> str:
    parts = []
    for camera_id, p in progress.items():
        report = health.get(camera_id)
        state = f" ({report.state.value}, {report.achieved_fps:.1f}/{report.target_fps:g} fps)" if report else ""
        parts.append(f"{camera_id}: {p.frames_produced} frames{state}")
    return "  ".join(parts)


def _summary(progress: dict[str, CameraProgress], outages: Mapping[str, list[float]]) -> str:
    lines = ["camera               frames      bytes  dead letters  retries  outages  status"]
    for camera_id, p in progress.items():
        status = f"error: {p.error}" if p.error else "ok"
        away = outages.get(camera_id, [])
        gone = f"{len(away)} ({sum(away):.1f} s)" if away else "0"
        lines.append(
            f"{camera_id:<20} {p.frames_produced:>6} {p.bytes_produced:>10} {p.dead_letters:>13} "
            f"{p.delivery_retries:>8} {gone:>8}  {status}"
        )
    return "\n".join(lines)
