"""``framestream chaos``: a soak of the whole pipeline on the embedded stack (three Kafka nodes,
tritonserver, chDB) with faults injected from a seeded schedule, and invariants checked.

    framestream chaos --duration 30m --seed 1 --json var/chaos/soak.json
    framestream chaos --duration 3m --faults kill,malformed --seed 7

Exits 0 when no invariant was violated, 1 otherwise (the table lists the violations).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from framestream.settings import Settings

log = logging.getLogger(__name__)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("chaos", help="soak the pipeline under random faults and check its invariants")
    parser.add_argument(
        "--duration", type=parse_duration, default=parse_duration("30m"), help="e.g. 90s, 30m (default 30m)"
    )
    parser.add_argument(
        "--faults", default="kill,pause,triton,broker,malformed", help="fault kinds to inject (comma-separated)"
    )
    parser.add_argument(
        "--targets",
        default="ingest,detect,alert,persist",
        help="workers that kills and pauses may hit (comma-separated; default all)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the malformed records")
    parser.add_argument(
        "--mean-interval", type=float, default=15.0, help="seconds between faults on average (default 15)"
    )
    parser.add_argument(
        "--recovery-limit", type=float, default=300.0, help="seconds a fault may take to recover (default 300)"
    )
    parser.add_argument(
        "--drain-limit", type=float, default=600.0, help="seconds for lag to reach 0 after ingest stops"
    )
    parser.add_argument(
        "--fps", type=float, default=0.5, help="frames per second of each of the three cameras (default 0.5)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures and the fault log here")
    parser.add_argument("--out", type=Path, default=None, help="state and logs (default: <data_dir>/chaos/<run>)")
    parser.set_defaults(handler=run)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h`` -> seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 1h)")
    value = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    from framestream.chaos.invariants import Checked, Violation, check_everything
    from framestream.chaos.pipeline import SESSION_TIMEOUT_S, Pipeline, chaos_settings
    from framestream.chaos.report import build_report, print_report
    from framestream.chaos.runner import ChaosRun
    from framestream.chaos.schedule import build_schedule, parse_kinds, parse_workers
    from framestream.services.stack import EmbeddedStack

    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # clean up the stack, and say why the run ended
    try:
        kinds, workers = parse_kinds(args.faults), parse_workers(args.targets)
    except ValueError as error:
        log.error("bad chaos arguments", extra={"error": str(error)})
        return 2
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = (args.out or settings.data_dir / "chaos" / run_id).resolve()
    shutil.rmtree(out, ignore_errors=True)
    settings = chaos_settings(settings, out, args.fps)
    schedule = build_schedule(
        seed=args.seed,
        duration_s=args.duration,
        kinds=kinds,
        mean_interval_s=args.mean_interval,
        session_timeout_s=SESSION_TIMEOUT_S,
        workers=workers,
    )
    print(
        f"framestream chaos: {len(schedule)} faults over {args.duration:.0f}s, seed {args.seed}; "
        f"state and logs in {out}"
    )
    with EmbeddedStack(settings) as stack:
        pipeline = Pipeline(stack, out)
        pipeline.setup()
        pipeline.start()
        print(
            f"  pipeline up: broker {stack.settings.kafka.bootstrap_servers}, triton {stack.settings.triton.url}",
            flush=True,
        )
        chaos = ChaosRun(
            stack, pipeline, schedule, duration_s=args.duration, seed=args.seed, recovery_limit_s=args.recovery_limit
        )
        try:
            chaos.run()
            chaos.malformed.close()
            pipeline.stop_ingest()
            drain_s = _drain(chaos, args.drain_limit)
            shutdown = pipeline.stop_workers()
        except BaseException:
            pipeline.kill_all()
            raise
        try:
            checked = check_everything(stack.settings, dict(chaos.malformed.delivered), set(chaos.malformed.failed))
        except Exception as error:  # noqa: BLE001 - the soak's figures are still worth writing
            log.exception("the end-of-soak checks failed")
            checked = Checked([Violation("harness", f"the end-of-soak checks failed: {error!r}")])
    chaos.close()
    report = build_report(chaos, checked, drain_s=drain_s, drain_limit_s=args.drain_limit, shutdown=shutdown)
    print_report(report.document)
    if args.json is not None:
        from framestream.bench.report import write_json

        write_json(args.json, {"command": "chaos", "faults_requested": args.faults, **report.document})
    return 0 if not report.violations else 1


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit("framestream chaos: stopped by SIGTERM before the soak ended")


def _drain(chaos: "ChaosRun", limit_s: float) -> float | None:  # noqa: F821 - imported in run()
    """Seconds until every group committed everything on its topics (None: not within ``limit_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        chaos.wait_for_recoveries()
        targets = chaos.lag.targets()
        committed = chaos.lag.committed_or_none()
        if targets is not None and committed is not None and chaos.lag.lag(targets, committed) == 0:
            return time.monotonic() - started
        time.sleep(2.0)
    return None
