"""``framestream bench detector``: the served pipeline beside in-process ONNX Runtime.

For each concurrency C, C closed-loop clients each send their share of N requests (one
image per request) to Triton's ``detector``, and, in the same run, C threads run the very
same processors (decode, letterbox, NanoDet through onnxruntime, bin decoding, NMS) on the
same images in this process. Printed per concurrency: images/s and latency p50/p95 of
each, and served/in-process throughput. Each figure is the median over --rounds rounds,
served and in-process alternating, after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from framestream.bench.photos import PHOTOS, MissingBenchInput, image_files
from framestream.bench.report import percentile, write_json
from framestream.settings import Settings
from processors.decode import DecodeError
from processors.detector import ObjectDetections, Thresholds, detect_batch
from processors.nanodet import INPUT_NAME, OUTPUT_NAMES


class InProcessDetector:
    """The detector pipeline in this process: processors/ around an onnxruntime session.
    The reference the served pipeline is compared with (tests) and measured against (bench)."""

    def __init__(
        self, model_path: Path, intra_op_threads: int = 0, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(
            str(model_path), options, providers=[_with_options(name, model_path) for name in providers]
        )

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(OUTPUT_NAMES, self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}), strict=True))

    def detect(self, image: bytes, score_threshold: float = 0.35, iou_threshold: float = 0.6) -> ObjectDetections:
        """Detections for one encoded image; raises DecodeError for bad bytes."""
        result = detect_batch([image], self.infer, [Thresholds(score_threshold, iou_threshold)])[0]
        if isinstance(result, DecodeError):
            raise result
        return result


def _with_options(provider: str, model_path: Path) -> str | tuple[str, dict[str, object]]:
    """TensorRT as the served GPU model runs it (FP16, engines cached beside the model's folder)."""
    if provider != "TensorrtExecutionProvider":
        return provider
    cache = model_path.parent.parent / "trt-cache-inprocess"
    return provider, {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}


@dataclass(frozen=True)
class RunFigures:
    images_per_s: float
    p50_ms: float
    p95_ms: float


def figures(latencies_s: Sequence[float], elapsed_s: float) -> RunFigures:
    latencies_ms = np.asarray(latencies_s) * 1000.0
    return RunFigures(len(latencies_s) / elapsed_s, percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.95))


def median_figures(runs: Sequence[RunFigures]) -> RunFigures:
    return RunFigures(*(statistics.median(getattr(run, field) for run in runs) for field in RunFigures.__annotations__))


def split_work(images: Sequence[bytes], requests: int, workers: int) -> list[list[bytes]]:
    """Request i uses image i mod len(images); worker w takes requests w, w + workers, ..."""
    order = [images[i % len(images)] for i in range(requests)]
    return [order[worker::workers] for worker in range(workers)]


async def run_served(url: str, images: Sequence[bytes], requests: int, concurrency: int) -> RunFigures:
    from streams.inference import DetectorClient

    latencies: list[float] = []

    async def worker(share: list[bytes]) -> None:
        for image in share:
            started = time.perf_counter()
            await client.detect(image)
            latencies.append(time.perf_counter() - started)

    async with DetectorClient(url, max_in_flight=concurrency) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(share) for share in split_work(images, requests, concurrency)))
        return figures(latencies, time.perf_counter() - started)


def run_in_process(detector: InProcessDetector, images: Sequence[bytes], requests: int, concurrency: int) -> RunFigures:
    def worker(share: list[bytes]) -> list[float]:
        latencies = []
        for image in share:
            started = time.perf_counter()
            detector.detect(image)
            latencies.append(time.perf_counter() - started)
        return latencies

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        started = time.perf_counter()
        shares = list(pool.map(worker, split_work(images, requests, concurrency)))
        elapsed = time.perf_counter() - started
    return figures([latency for share in shares for latency in share], elapsed)


async def measure(
    url: str, detector: InProcessDetector, images: list[bytes], args: argparse.Namespace, report: Callable[[str], None]
) -> list[tuple[int, RunFigures, RunFigures]]:
    warmup = 2 * max(args.concurrency)
    await run_served(url, images, warmup, max(args.concurrency))
    run_in_process(detector, images, warmup, max(args.concurrency))
    rows = []
    for concurrency in args.concurrency:
        served, local = [], []
        for _ in range(args.rounds):
            served.append(await run_served(url, images, args.requests, concurrency))
            local.append(await asyncio.to_thread(run_in_process, detector, images, args.requests, concurrency))
        rows.append((concurrency, median_figures(served), median_figures(local)))
        report(format_row(*rows[-1]))
    return rows


HEADER = (
    f"{'conc':>4} | {'served img/s':>12} {'p50 ms':>7} {'p95 ms':>7} | "
    f"{'in-proc img/s':>13} {'p50 ms':>7} {'p95 ms':>7} | {'served/in-proc':>14}"
)


def format_row(concurrency: int, served: RunFigures, local: RunFigures) -> str:
    return (
        f"{concurrency:>4} | {served.images_per_s:>12.1f} {served.p50_ms:>7.1f} {served.p95_ms:>7.1f} | "
        f"{local.images_per_s:>13.1f} {local.p50_ms:>7.1f} {local.p95_ms:>7.1f} | "
        f"{served.images_per_s / local.images_per_s:>14.2f}"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="framestream bench detector", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=PHOTOS, help="folder of .jpg/.png images")
    parser.add_argument("--requests", type=int, default=48, help="requests per run (default 48)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[1, 2, 4, 8],
        help="comma-separated concurrency levels (default 1,2,4,8)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per level; medians are reported (default 3)")
    parser.add_argument("--triton-url", default=None, help="use this Triton (host:port) instead of starting one")
    parser.add_argument(
        "--providers",
        type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
        default=["CPUExecutionProvider"],
        help="ONNX Runtime providers of the in-process reference (default CPUExecutionProvider; "
        "on a GPU e.g. TensorrtExecutionProvider,CUDAExecutionProvider)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1 or min(args.concurrency) < 1:
        parser.error("--requests, --rounds and every --concurrency must be at least 1")
    return args


def main(argv: list[str], settings: Settings) -> int:
    args = parse_args(argv)
    try:
        images = [path.read_bytes() for path in image_files(args.images)]
    except MissingBenchInput as error:
        print(f"framestream bench detector: {error}", file=sys.stderr)
        return 1
    url = settings.triton.url if args.triton_url is None else args.triton_url
    with ExitStack() as stack:
        if not url:
            from framestream.services.triton import LocalTriton

            triton = LocalTriton(
                settings.triton.model_repository,
                settings.triton.venv,
                log_file=settings.data_dir / "logs" / "tritonserver-bench.log",
            )
            url = stack.enter_context(triton).grpc_url
        detector = InProcessDetector(
            settings.triton.model_repository / "nanodet" / "1" / "model.onnx", providers=args.providers
        )
        print(
            f"detector pipeline: {len(images)} images from {args.images}, {args.requests} requests per run, "
            f"median of {args.rounds} rounds; served = Triton at {url}, in-process = onnxruntime "
            f"{ort.__version__} in this process"
        )
        print(HEADER)
        rows = asyncio.run(measure(url, detector, images, args, report=print))
    if args.json is not None:
        write_json(args.json, json_figures(args, url, rows))
    return 0


def json_figures(
    args: argparse.Namespace, url: str, rows: list[tuple[int, RunFigures, RunFigures]]
) -> dict[str, object]:
    """Per concurrency: served and in-process images/s, their ratio, and the latencies (medians of rounds)."""
    return {
        "bench": "detector",
        "requests": args.requests,
        "rounds": args.rounds,
        "triton_url": url,
        "onnxruntime": ort.__version__,
        "inprocess_providers": list(args.providers),
        "concurrency": [
            {
                "concurrency": concurrency,
                "served_fps": round(served.images_per_s, 2),
                "inprocess_fps": round(local.images_per_s, 2),
                "ratio": round(served.images_per_s / local.images_per_s, 3),
                "served_p50_ms": round(served.p50_ms, 1),
                "served_p95_ms": round(served.p95_ms, 1),
                "inprocess_p50_ms": round(local.p50_ms, 1),
                "inprocess_p95_ms": round(local.p95_ms, 1),
            }
            for concurrency, served, local in rows
        ],
    }
