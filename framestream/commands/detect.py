"""``framestream detect PATH...``: images in, one JSON line per image out, via the served pipeline.

Each line: {"file", "width", "height", "detections": [{"class_name", "class_id", "score",
"box": [x1, y1, x2, y2]}]}. A directory stands for the JPEG/PNG files directly in it.
Without a configured Triton URL (FRAMESTREAM_TRITON_URL) the local tritonserver is started
for the duration of the command. Paths that cannot be read and images Triton rejects are
reported on stderr and make the exit status 1; the good images are still printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from framestream.settings import Settings
from processors.decode import DecodeError, probe_size
from processors.detector import ObjectDetections
from schemas.coco import class_name

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
CHUNK = 64  # images read and sent at a time, so a huge folder does not sit in memory
EXIT_BAD_INPUT = 1
EXIT_UNAVAILABLE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("detect", help="detect objects in image files through Triton")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image file or folder of images")
    parser.add_argument(
        "--triton-url", default=None, help="Triton gRPC host:port (default: settings; empty starts one)"
    )
    parser.add_argument("--score-threshold", type=float, default=None, help="minimum score (default: settings)")
    parser.add_argument("--iou-threshold", type=float, default=None, help="NMS IoU threshold (default: settings)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    score = settings.triton.score_threshold if args.score_threshold is None else args.score_threshold
    iou = settings.triton.iou_threshold if args.iou_threshold is None else args.iou_threshold
    for name, value in (("--score-threshold", score), ("--iou-threshold", iou)):
        if not 0.0 <= value <= 1.0:
            print(f"framestream detect: {name} must be within [0, 1], got {value}", file=sys.stderr)
            return EXIT_BAD_INPUT
    files, path_errors = expand_paths(args.paths)
    for error in path_errors:
        print(f"framestream detect: {error}", file=sys.stderr)
    if not files:
        return EXIT_BAD_INPUT
    url = settings.triton.url if args.triton_url is None else args.triton_url
    with ExitStack() as stack:
        if not url:
            from framestream.services.triton import LocalTriton, TritonStartError  # only needed without a server

            log_file = settings.data_dir / "logs" / "tritonserver-detect.log"
            try:
                url = stack.enter_context(
                    LocalTriton(settings.triton.model_repository, settings.triton.venv, log_file=log_file)
                ).grpc_url
            except TritonStartError as error:
                print(f"framestream detect: cannot start the local Triton: {error}", file=sys.stderr)
                return EXIT_UNAVAILABLE
        failures = asyncio.run(_detect_files(files, url, settings, score, iou))
    if failures < 0:
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT if failures or path_errors else 0


def expand_paths(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files to read (folders expanded to their image files, sorted) and one error per bad path."""
    files: list[Path] = []
    errors: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{path}: folder holds no .jpg/.jpeg/.png files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


async def _detect_files(files: list[Path], url: str, settings: Settings, score: float, iou: float) -> int:
    """Print one line per detected image; return the number of failures (-1: Triton unavailable)."""
    from streams.inference import DetectorClient, InferenceRejected, InferenceUnavailable

    failures = 0
    async with DetectorClient(
        url, settings.triton.model_name, settings.triton.max_in_flight, settings.triton.timeout_s
    ) as client:
        try:
            await client.wait_ready(timeout_s=settings.triton.timeout_s)
            for chunk in _chunks(files, CHUNK):
                readable = _read_files(chunk)
                failures += len(chunk) - len(readable)
                results = await client.detect_many([data for _, data in readable], score, iou)
                for (path, data), result in zip(readable, results, strict=False):
                    if isinstance(result, InferenceRejected):
                        print(f"framestream detect: {path}: rejected: {result}", file=sys.stderr)
                        failures += 1
                    else:
                        print(json.dumps(image_record(path, data, result)), flush=True)
        except InferenceUnavailable as error:
            print(f"framestream detect: Triton at {url} is unavailable: {error}", file=sys.stderr)
            return -1
    return failures


def image_record(path: Path, data: bytes, detections: ObjectDetections) -> dict[str, object]:
    """The JSON line of one image. Width and height come from the header (no second decode)."""
    try:
        width, height = probe_size(data, max_pixels=sys.maxsize)
    except DecodeError:
        width = height = None  # Triton decoded it, so this does not happen in practice
    return {
        "file": str(path),
        "width": width,
        "height": height,
        "detections": [
            {
                "class_name": class_name(int(class_id)),
                "class_id": int(class_id),
                "score": round(float(score), 4),
                "box": [round(float(v), 1) for v in box],
            }
            for box, score, class_id in zip(detections.boxes, detections.scores, detections.class_ids, strict=False)
        ],
    }


def _read_files(paths: list[Path]) -> list[tuple[Path, bytes]]:
    """(path, bytes) of each readable file, in order (a path given twice is read twice)."""
    readable: list[tuple[Path, bytes]] = []
    for path in paths:
        try:
            readable.append((path, path.read_bytes()))
        except OSError as error:
            print(f"framestream detect: {path}: cannot read: {error.strerror or error}", file=sys.stderr)
    return readable


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
