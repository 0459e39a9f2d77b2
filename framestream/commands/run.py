"""``framestream run``: the main job end to end on the embedded stack and the bundled sample.

It starts what is not configured (the broker, tritonserver; chDB is in-process), creates the
topics, applies the migrations, runs one worker with every stage and the camera ingest as
separate processes (as a deployment would), follows the topics to print progress, then
stops the worker gracefully and prints a summary read back from ClickHouse.

``--secure``: the same on the secured embedded stack (TLS + SCRAM + ACLs, see
``framestream services --secure``): ``setup`` as admin creates the users and ACLs, and
ingest and each stage run as their own principal, one process each, with only their role's
Kafka settings (the progress display reads as admin).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from framestream.child_process import ChildProcess, WorkerProcess
from framestream.demo.progress import TopicFollower
from framestream.demo.summary import annotated_frames_blurrer, print_summary, query_summary, write_annotated_frames
from framestream.services.stack import EmbeddedStack
from framestream.settings import Settings
from streams.topics import TopicNames


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the whole pipeline on the bundled sample and print a summary")
    parser.add_argument("--max-frames", type=int, default=40, help="frames per camera (default 40)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <data_dir>/demo)")
    parser.add_argument("--annotated", type=int, default=6, help="annotated frames to write (default 6)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--secure", action="store_true", help="TLS + SCRAM + ACLs, one Kafka principal per stage")
    parser.set_defaults(handler=run)


def _demo_settings(settings: Settings, out: Path) -> Settings:
    """A fresh data dir and topic prefix per run, so reruns never see an earlier run's frames."""
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    prefix = settings.kafka.topic_prefix or f"demo-{run_id}."
    kafka = settings.kafka.model_copy(update={"topic_prefix": prefix})
    return settings.model_copy(update={"data_dir": out / "state", "kafka": kafka})


def run(args: argparse.Namespace, settings: Settings) -> int:
    out = (args.out or settings.data_dir / "demo").resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    settings = _demo_settings(settings, out)
    started = time.monotonic()
    print(f"framestream demo: cameras {settings.cameras_file}, rules {settings.rules_file}, output {out}")
    with EmbeddedStack(settings, secure=args.secure) as stack:
        print(f"  broker {stack.settings.kafka.bootstrap_servers}   triton {stack.settings.triton.url}")
        env = {**os.environ, **{name: value for name, value in stack.env().items() if value}}
        role_env = _role_environments(stack, env)
        setup = ["setup"] if stack.security is None else ["setup", "--kafka-users", str(stack.security.env_dir)]
        ChildProcess.framestream(setup, log_path=out / "logs" / "setup.log", env=role_env("admin")).run_to_end(300)
        follower = TopicFollower(stack.settings, keep_frames=args.annotated * 4)
        follower.start()
        # Plaintext: one worker runs every stage. Secured: one worker per stage and principal.
        stage_sets = [ALL_STAGES] if stack.security is None else ALL_STAGES.split(",")
        workers = [
            WorkerProcess(
                ["--stages", stages],
                worker_id="demo" if stages == ALL_STAGES else f"demo-{stages}",
                env=role_env(stages),
                log_path=out / "logs" / ("worker.log" if stages == ALL_STAGES else f"worker-{stages}.log"),
            )
            for stages in stage_sets
        ]
        try:
            for worker in workers:
                worker.start()
            _wait_until_assigned(workers[0], stack.settings, deadline=started + args.timeout)
            # Secured: setup created the topics as admin; ingest's principal may not create any.
            no_create = [] if stack.security is None else ["--no-create-topics"]
            ingest = ChildProcess.framestream(
                ["ingest", "--max-frames", str(args.max_frames), *no_create],
                env=role_env("ingest"),
                log_path=out / "logs" / "ingest.log",
            ).start()
            _wait_until_persisted(follower, workers, ingest, deadline=started + args.timeout)
        finally:
            for worker in workers:
                worker.stop()
            follower.stop()
        summary = query_summary(stack.settings)
        # Inside the stack: blurring faces (when FRAMESTREAM_PRIVACY_* asks for it) needs Triton.
        blurrer = annotated_frames_blurrer(stack.settings.triton)
        annotated = write_annotated_frames(follower, out / "annotated", args.annotated, blurrer)
    print_summary(summary, annotated, wall_s=time.monotonic() - started)
    return 0


ALL_STAGES = "detect,track,alert,persist"


def _role_environments(stack: EmbeddedStack, env: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """The environment of a child acting as ``role`` (on the secured stack: ``env`` plus that
    role's Kafka settings, as its 0600 env file holds them; on the plaintext one: ``env``)."""
    security = stack.security
    if security is None:
        return lambda role: env
    servers = stack.settings.kafka.bootstrap_servers
    security.write_env_files(servers, {name: value for name, value in stack.env().items() if "KAFKA" not in name})
    return lambda role: {**env, **security.client_env(role, servers)}


def _wait_until_assigned(worker: WorkerProcess, settings: Settings, deadline: float) -> None:
    """Ingest starts once the worker owns the frames' partitions, so latency figures are the
    pipeline's, not the worker's start-up time."""
    frames_topic = TopicNames(settings.kafka.topic_prefix).frames
    while True:
        worker.raise_if_exited()
        assigned = worker.metric("framestream_assigned_partitions", topic=frames_topic)
        if assigned >= settings.kafka.partitions:
            print(f"  worker ready: {int(assigned)} frame partitions assigned", flush=True)
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not join its group in time; see {worker.log_path}")
        time.sleep(0.25)


def _wait_until_persisted(
    follower: TopicFollower, workers: list[WorkerProcess], ingest: ChildProcess, deadline: float
) -> None:
    """Ingest finished, every produced frame detected (or dead-lettered), every message stored in ClickHouse."""
    last_print = 0.0
    worker = workers[-1]  # the one running persist
    while True:
        for running in workers:
            running.raise_if_exited()
        ingest_done = ingest.finished()
        counts = follower.counts()
        stored = {
            kind: worker.metric("framestream_persisted_messages_total", kind=kind)
            for kind in ("detections", "alerts", "deadletters")
        }
        # Every detections message judged by the alert stage too: frames of a classifier camera can
        # each raise an alert, and alerts wait for their snapshots.
        judged = sum(running.metric("framestream_frames_total", stage="alert") for running in workers)
        raised = sum(running.metric("framestream_alerts_total") for running in workers)
        done = (
            ingest_done
            and counts.frames > 0
            and counts.detections + counts.detect_dead_letters >= counts.frames
            and judged >= counts.detections
            and stored.get("detections", 0) >= counts.detections
            and stored.get("alerts", 0) >= max(counts.alerts, raised)
            and stored.get("deadletters", 0) >= counts.dead_letters
        )
        if time.monotonic() - last_print >= 1.0 or done:
            print(
                f"  frames {counts.frames:5d}  detected {counts.detections:5d}  alerts {counts.alerts:4d}  "
                f"dead letters {counts.dead_letters:3d}  stored {int(stored.get('detections', 0)):5d}",
                flush=True,
            )
            last_print = time.monotonic()
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline did not drain in time; see {worker.log_path}")
        time.sleep(0.25)
