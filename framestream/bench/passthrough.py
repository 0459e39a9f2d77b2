"""``framestream bench passthrough``: the pipeline's own cost, with a NULL model in Triton.

    framestream bench passthrough --frames 2000 --rounds 3 --json var/passthrough.json
    framestream bench passthrough --model nanodet --frames 200   # CPU accounting, real model
    framestream bench passthrough --versus /tmp/base             # another checkout, side by side

Frames: 1280x720 JPEGs of about --frame-kb KB made from the bundled photos
(``framestream/bench/jpegs.py``). They go Kafka -> detect -> Triton -> detections ->
persist -> ClickHouse through a real ``framestream worker`` (detect, alert, persist), the
embedded broker and a tritonserver serving, with ``--model null`` (the default), the
repository ``infra/triton/passthrough`` -- a ``detector`` with the real one's I/O contract
that answers every image with no detections without decoding it -- or, with ``--model
nanodet``, the production repository ``triton_models/``.

Each round a feeder process produces --frames frames at once; the round ends when their rows
are stored. Printed: frames/s (first produce -> last row stored in ClickHouse); CPU-ms per
frame of every process over the round (``cpu.py``: the broker JVM, the feeder = ingest, the
worker -- chDB, the ClickHouse engine, runs inside it --, tritonserver with its Python stubs),
gross and net of what each burns idle; where a frame's time goes (``breakdown.py``); and the
model's own CPU-ms per frame in this process (decode, letterbox, NanoDet on one ONNX Runtime
thread, NMS, on the same JPEGs, as ``bench detector`` runs it). ``overhead_cpu_ratio`` is the
pipeline's CPU per frame beyond the model divided by the model's: with the null model all of
the pipeline's CPU (its model costs nothing); with nanodet all processes minus the model's
in-process CPU. A last round paced at half the measured throughput gives the latencies of a
pipeline that keeps up. ``--versus PATH`` runs a second worker from another checkout (e.g.
``git archive <rev> | tar -x -C PATH``) on its own topics, rounds alternating, and prints the
two side by side; ``--env``/``--versus-env`` set worker settings of either, so ``--versus .``
compares settings.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

from framestream.bench import breakdown
from framestream.bench.feeder import save_frames
from framestream.bench.jpegs import camera_jpegs
from framestream.bench.passthrough_report import Report, print_comparison, print_report
from framestream.bench.report import write_json
from framestream.bench.rounds import Feeder, Variant, cpu, idle_cpu_per_s, measure_round
from framestream.settings import REPO_ROOT, Settings

NULL_REPOSITORY = REPO_ROOT / "infra" / "triton" / "passthrough"
IDLE_S = 5.0


def parse_env(text: str) -> tuple[str, str]:
    """A worker environment variable: a framestream setting, or one of faust's (e.g. PRODUCER_LINGER)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=value, got {text!r}")
    return name, value


def parse_args(argv: list[str], settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="framestream bench passthrough", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        choices=("null", "nanodet"),
        default="null",
        help="null: infra/triton/passthrough (no work); nanodet: the production repository",
    )
    parser.add_argument("--frames", type=int, default=None, help="frames per round (default 2000 null, 200 nanodet)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds; medians are printed")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=settings.triton.max_in_flight,
        help="Triton requests in flight in the detect stage (default: the settings')",
    )
    parser.add_argument("--cameras", type=int, default=4, help="cameras the frames are spread over (keys)")
    parser.add_argument("--frame-kb", type=int, default=150, help="JPEG size to aim at, KB (default 150)")
    parser.add_argument("--model-frames", type=int, default=24, help="frames the in-process model runs for its CPU")
    parser.add_argument("--no-paced", action="store_true", help="skip the paced latency round")
    parser.add_argument(
        "--env",
        type=parse_env,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of this checkout's worker: FRAMESTREAM_WORKER_..., faust's (repeatable)",
    )
    parser.add_argument("--versus", type=Path, default=None, help="another checkout: its worker side by side")
    parser.add_argument(
        "--versus-env",
        type=parse_env,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the --versus worker (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.frames is None:
        args.frames = 2000 if args.model == "null" else 200
    if min(args.frames, args.rounds, args.concurrency, args.cameras, args.model_frames) < 1:
        parser.error("--frames, --rounds, --concurrency, --cameras and --model-frames must be at least 1")
    if args.versus is not None and not (args.versus / "streams" / "detect.py").is_file():
        parser.error(f"--versus {args.versus}: not a framestream checkout (no streams/detect.py)")
    return args


def model_cpu_ms_per_frame(frames: list[bytes], count: int, model_repository: Path) -> float:
    """CPU-ms per frame of the detector in this process (processors + onnxruntime), as bench detector runs it,
    on one onnxruntime thread: the work itself, without a thread pool's spinning (which, on a busy
    machine, can double the CPU time and would flatter the pipeline's share)."""
    import time

    from framestream.bench.detector import InProcessDetector

    detector = InProcessDetector(model_repository / "nanodet" / "1" / "model.onnx", intra_op_threads=1)
    detector.detect(frames[0])  # warm-up: session initialisation is not per-frame cost
    started = time.process_time()
    for index in range(count):
        detector.detect(frames[index % len(frames)])
    return 1000.0 * (time.process_time() - started) / count


def run(variants: list[Variant], feeder: Feeder, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Warm-up, idle window, measured rounds (variants alternating), then a paced round each."""
    brokers = cpu.find_children("kafka.Kafka") or cpu.find_children("tansu")
    broker = brokers[0] if brokers else None
    for variant in variants:
        variant.start(args.concurrency)
    for variant in variants:
        variant.wait_ready()
        measure_round(variant, feeder, broker, "warmup", max(4 * args.concurrency, args.frames // 10))
    idle = idle_cpu_per_s(variants, broker, IDLE_S)
    for index in range(args.rounds):
        for variant in variants if index % 2 == 0 else variants[::-1]:
            variant.rounds.append(measure_round(variant, feeder, broker, f"r{index}", args.frames))
    if not args.no_paced:
        for variant in variants:
            fps = statistics.median(r.frames_per_s for r in variant.rounds) / 2
            frames = max(20, min(args.frames, int(fps * 10)))
            variant.rounds.append(measure_round(variant, feeder, broker, "paced", frames, fps=fps))
    return idle


def read_frame_times(variant: Variant) -> None:
    """Per round, the frames table's times; the round's seconds become first produce -> last row stored."""
    from streams.sinks.clickhouse_db import connect

    client = connect(variant.settings.clickhouse, variant.settings.data_dir)
    try:
        times = breakdown.frame_times(client, variant.settings.clickhouse.database, [r.label for r in variant.rounds])
    finally:
        client.close()
    for round_ in variant.rounds:
        round_.times = times[round_.label]
        round_.seconds = times[round_.label].last_stored_at - float(round_.feed["started"])  # type: ignore[arg-type]


def start_versus_triton(args: argparse.Namespace, settings: Settings, scratch: Path, stack: ExitStack) -> str | None:
    """With nanodet, the other checkout's model code in a tritonserver of its own; the null model is shared."""
    if args.versus is None or args.model == "null":
        return None
    from framestream.services.triton import LocalTriton

    triton = LocalTriton(
        args.versus / "triton_models",
        settings.triton.venv,
        pythonpath=(args.versus.resolve(),),
        log_file=scratch / "versus" / "tritonserver.log",
    )
    return stack.enter_context(triton).grpc_url


def main(argv: list[str], settings: Settings) -> int:
    from framestream.services.stack import EmbeddedStack

    args = parse_args(argv, settings)
    scratch = settings.data_dir / "bench" / f"passthrough-{uuid.uuid4().hex[:8]}"
    frames = camera_jpegs(args.frame_kb * 1000)
    save_frames([(frame.data, frame.width, frame.height) for frame in frames], scratch / "frames")
    production = settings.triton.model_repository
    repository = NULL_REPOSITORY if args.model == "null" else production
    # The null model is served by a tritonserver started here even when a Triton URL is configured.
    url = "" if args.model == "null" else settings.triton.url
    triton = settings.triton.model_copy(update={"model_repository": repository, "url": url})
    stack_settings = settings.model_copy(update={"data_dir": scratch, "triton": triton})
    try:
        with EmbeddedStack(stack_settings) as embedded, ExitStack() as services:
            versus_url = start_versus_triton(args, embedded.settings, scratch, services)
            variants = [
                Variant.make("this", REPO_ROOT, embedded.settings, embedded.env(), scratch / "this", dict(args.env))
            ]
            if args.versus is not None:
                variants.append(
                    Variant.make(
                        "versus",
                        args.versus.resolve(),
                        embedded.settings,
                        embedded.env(),
                        scratch / "versus",
                        dict(args.versus_env),
                        versus_url,
                    )
                )
            feeder = Feeder(scratch / "frames", args.cameras, scratch / "feeder.log")
            try:
                idle = run(variants, feeder, args)
            finally:
                for variant in variants:
                    variant.stop()
        for variant in variants:
            read_frame_times(variant)
    except BaseException:
        print(f"bench failed; logs and data are kept in {scratch}", file=sys.stderr)
        raise
    model_ms = model_cpu_ms_per_frame([frame.data for frame in frames], args.model_frames, production)
    sizes = [len(frame.data) for frame in frames]
    reports = [Report(args, variant, idle[variant.name], model_ms, sizes) for variant in variants]
    for report in reports:
        print_report(report)
    if len(reports) > 1:
        print_comparison(reports[0], reports[1])
    if args.json is not None:
        figures = reports[0].figures()
        if len(reports) > 1:
            figures["versus"] = {"tree": str(args.versus), "env": dict(args.versus_env), **reports[1].figures()}
            figures["this_over_versus"] = reports[0].ratios(reports[1])
        write_json(args.json, figures)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0
