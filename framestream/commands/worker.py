"""``framestream worker``: run stream stages (detect, alert, persist) in this process.

A deployment runs all stages in one process or each in its own (several
``--stages detect`` workers share the frames' partitions: one consumer group per
stage set). SIGTERM stops gracefully: consumption pauses, the batches in hand are
finished and delivered, the sink is flushed, offsets are committed.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass

from pydantic import ValidationError

from framestream.settings import Settings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_SHUTDOWN_TIMEOUT = 3
EXIT_UNAVAILABLE = 4  # a service (broker, ClickHouse) did not answer or refused the setup


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run stream stages (detect, alert, persist) as a faust worker")
    parser.add_argument("--stages", default="detect,alert,persist", help="comma-separated stages (default: all)")
    parser.add_argument(
        "--web-port",
        type=int,
        default=None,
        help="faust's web server port (default: disabled); each worker needs its own",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus /metrics port (default: none; 0 picks a free one)"
    )
    parser.add_argument(
        "--worker-id", default=None, help="names this worker's table state under the data dir (default: <host>-<pid>)"
    )
    parser.set_defaults(handler=run)


def missing_endpoints(settings: Settings, stages: tuple) -> list[str]:
    from streams.app import Stage

    problems = []
    if not settings.kafka.bootstrap_servers:
        problems.append(
            "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS is empty: point it at the broker "
            "(`framestream services` starts the embedded one)"
        )
    if Stage.DETECT in stages and not settings.triton.url:
        problems.append("FRAMESTREAM_TRITON_URL is empty: point it at Triton's gRPC endpoint")
    return problems


class WorkerConfigError(ValueError):
    pass


@dataclass(frozen=True)
class WorkerPlan:
    """Everything checked before the worker touches a service."""

    stages: tuple
    worker_settings: "WorkerSettings"  # noqa: F821 - streams.context, imported lazily
    rules: "RuleSet | None"  # noqa: F821 - processors.rules


def plan(args: argparse.Namespace, settings: Settings) -> WorkerPlan:
    """Validate arguments, worker settings, endpoints and the rules file; raises ``WorkerConfigError``."""
    from streams.app import Stage, parse_stages
    from streams.config_files import load_rules
    from streams.context import WorkerSettings

    try:
        stages = parse_stages(args.stages)
        worker_settings = WorkerSettings()
        rules = load_rules(settings.rules_file) if {Stage.ALERT, Stage.TRACK} & set(stages) else None
    except (ValueError, ValidationError) as error:  # ConfigFileError is a ValueError naming file and field
        raise WorkerConfigError(str(error)) from error
    problems = missing_endpoints(settings, stages)
    if problems:
        raise WorkerConfigError("; ".join(problems))
    return WorkerPlan(stages, worker_settings, rules)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import REGISTRY

    from streams.app import create_app
    from streams.context import WorkerContext
    from streams.metrics import WorkerMetrics, serve
    from streams.topics import TopicError, TopicNames, create_deployment_topics

    try:
        checked = plan(args, settings)
        create_deployment_topics(settings.kafka)
    except (WorkerConfigError, TopicError) as error:
        log.error("cannot start the worker", extra={"error": str(error)})
        return EXIT_CONFIG if isinstance(error, WorkerConfigError) else EXIT_UNAVAILABLE
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    # The process-wide registry: it also holds the ClickHouse sink's series and the process collector.
    metrics = WorkerMetrics(worker_id, registry=REGISTRY)
    if args.metrics_port is not None:
        serve(metrics, args.metrics_port, checked.worker_settings.bind_host)
    context = WorkerContext(
        settings,
        checked.worker_settings,
        TopicNames(settings.kafka.topic_prefix),
        metrics,
        worker_id,
        rules=checked.rules,
    )
    try:
        try:
            app = create_app(settings, checked.stages, args.web_port, context=context)
        except Exception:  # e.g. ClickHouse unreachable or a migration refused: say so, do not consume
            log.exception("cannot start the worker's stages")
            return EXIT_UNAVAILABLE
        log.info(
            "worker starting",
            extra={"worker_id": worker_id, "stages": [s.value for s in checked.stages], "group": app.conf.id},
        )
        return _run_faust(app, settings.log_level, context.worker.shutdown_timeout_s)
    finally:
        for close in context.closers:
            close()


def _run_faust(app: "faust.App", log_level: str, shutdown_timeout_s: float) -> int:  # noqa: F821 - lazy import
    from streams import faust_patches

    # faust's worker with the shutdown deadline armed by the first SIGTERM (see faust_patches).
    worker = faust_patches.Worker(
        app,
        on_stop_signal=lambda: _exit_after(shutdown_timeout_s),
        loglevel=log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _exit_after(seconds: float) -> None:
    loop = asyncio.get_event_loop()  # called from the signal handler, on the loop's thread

    def give_up() -> None:
        log.error(
            "graceful shutdown took too long; exiting without committing the events in hand",
            extra={"shutdown_timeout_s": seconds},
        )
        _dump_stacks(loop)
        logging.shutdown()
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()


def _dump_stacks(loop: asyncio.AbstractEventLoop) -> None:
    """Write every thread's and every pending task's stack to stderr: what the shutdown waited on."""
    print("--- threads at the shutdown deadline ---", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    print("--- asyncio tasks at the shutdown deadline ---", file=sys.stderr, flush=True)
    try:  # read from this timer thread while the loop may still run: best effort, diagnostics only
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:  # the set changed while it was copied
        tasks = []
    for task in tasks:
        task.print_stack(limit=8, file=sys.stderr)
    sys.stderr.flush()
