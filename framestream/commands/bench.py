"""``framestream bench NAME``: rerunnable benchmarks printing figures and ratios side by side."""

from __future__ import annotations

import argparse
import importlib

from framestream.settings import Settings

BENCHMARKS = {
    "detector": "framestream.bench.detector",
    "ingest": "framestream.bench.ingest",
    "passthrough": "framestream.bench.passthrough",
    "pipeline": "framestream.bench.pipeline",
    "sink": "framestream.bench.sink",
    "tracking": "framestream.bench.tracking",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark: " + ", ".join(BENCHMARKS))
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark (--help)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    module = importlib.import_module(BENCHMARKS[args.name])
    return int(module.main(args.bench_args, settings) or 0)
