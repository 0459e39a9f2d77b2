"""Measured rounds through a running pipeline, for ``bench passthrough``: one or two variants
(this checkout's worker and, to compare side by side in one run, another checkout's) on one
broker, each with its own topics, consumer group, chDB directory and worker process.

A round: a feeder process (``framestream/bench/feeder.py``) produces N frames to the variant's
frames topic; the round ends when the variant's worker has stored N more frame rows. Around it:
CPU per process (``cpu.py``), the worker's /metrics and Triton's statistics (``breakdown.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from framestream.bench import breakdown, cpu
from framestream.bench.pipeline import bench_settings, worker_env
from framestream.bench.progress import CommittedFrames, wait_until_stored
from framestream.child_process import ChildProcess, WorkerProcess
from framestream.settings import REPO_ROOT, Settings
from streams.topics import TopicNames, create_deployment_topics


@dataclass
class Round:
    variant: str
    label: str
    frames: int
    cpu_s: dict[str, float]  # per process, over the round
    window: breakdown.WindowTimes
    feed: dict[str, object] = field(default_factory=dict)
    seconds: float = float("nan")  # first produce -> last row stored: seen by polling, then read from ClickHouse
    times: breakdown.FrameTimes | None = None  # from the frames table, once the worker has stopped

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    def cpu_ms_per_frame(self) -> dict[str, float]:
        return {role: 1000.0 * seconds / self.frames for role, seconds in self.cpu_s.items()}


@dataclass
class Variant:
    """One worker (from ``tree``) with its own topics and data directory, and the Triton it calls."""

    name: str
    tree: Path
    settings: Settings
    env: dict[str, str]
    extra_env: dict[str, str]
    triton_pid: int | None
    scratch: Path
    worker: WorkerProcess | None = None
    progress: CommittedFrames | None = None
    stored: float = 0.0
    rounds: list[Round] = field(default_factory=list)

    @classmethod
    def make(
        cls,
        name: str,
        tree: Path,
        stack_settings: Settings,
        stack_env: dict[str, str],
        scratch: Path,
        extra_env: dict[str, str],
        triton_url: str | None = None,
    ) -> Variant:
        """Fresh topics and a data directory under ``scratch``; ``triton_url`` overrides the stack's Triton."""
        scratch.mkdir(parents=True, exist_ok=True)
        settings = bench_settings(stack_settings, scratch)
        if triton_url is not None:
            settings = settings.model_copy(update={"triton": settings.triton.model_copy(update={"url": triton_url})})
        env = stack_env | {
            "FRAMESTREAM_DATA_DIR": str(scratch),
            "FRAMESTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "FRAMESTREAM_TRITON_URL": settings.triton.url,
        }
        port = settings.triton.url.rsplit(":", 1)[-1]
        tritons = cpu.find_children("tritonserver", f"--grpc-port={port}")
        return cls(name, tree, settings, env, extra_env, tritons[0] if tritons else None, scratch)

    def start(self, concurrency: int) -> None:
        create_deployment_topics(self.settings.kafka)
        env = worker_env(self.settings, self.env, concurrency) | self.extra_env
        if self.tree != REPO_ROOT:  # the other checkout's code first on the path (cwd alone is not enough for -c)
            env["PYTHONPATH"] = os.pathsep.join([str(self.tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.worker = WorkerProcess(
            ["--stages", "detect,alert,persist"],
            worker_id=f"bench-{self.name}",
            log_path=self.scratch / "worker.log",
            env=env,
        )
        self.worker.cwd = self.tree
        self.worker.start()
        self.progress = CommittedFrames(self.settings.kafka)

    def wait_ready(self) -> None:
        assert self.worker is not None
        topic = TopicNames(self.settings.kafka.topic_prefix).frames
        self.worker.wait_for_metric("framestream_assigned_partitions", self.settings.kafka.partitions, 180, topic=topic)

    def pids(self, broker_pid: int | None) -> dict[str, int | None]:
        assert self.worker is not None
        return {"broker": broker_pid, "worker": self.worker.pid, "triton": self.triton_pid, "bench": os.getpid()}

    def stop(self) -> None:
        self.progress = None  # its admin client goes before the broker does
        if self.worker is not None:
            self.worker.stop()


class Feeder:
    """Runs ``framestream.bench.feeder`` in a process of its own, for one round."""

    def __init__(self, frames_dir: Path, cameras: int, log_path: Path) -> None:
        self.frames_dir = frames_dir
        self.cameras = cameras
        self.log_path = log_path

    def feed(self, variant: Variant, label: str, frames: int, fps: float | None) -> dict[str, object]:
        out = variant.scratch / f"feed-{label}.json"
        command = [
            sys.executable,
            "-m",
            "framestream.bench.feeder",
            "--frames-dir",
            str(self.frames_dir),
            "--label",
            label,
            "--count",
            str(frames),
            "--cameras",
            str(self.cameras),
            "--out",
            str(out),
        ]
        if fps:
            command += ["--fps", f"{fps:.3f}"]
        ChildProcess(command, log_path=self.log_path, env=variant.env, cwd=REPO_ROOT).run_to_end(900)
        return json.loads(out.read_text())


def measure_round(
    variant: Variant, feeder: Feeder, broker_pid: int | None, label: str, frames: int, fps: float | None = None
) -> Round:
    """Feed ``frames`` frames to ``variant``; its throughput, CPU per process and window figures."""
    worker = variant.worker
    assert worker is not None
    pids = variant.pids(broker_pid)
    metrics_before, triton_before = breakdown.parse_metrics(worker.metrics()), _triton(variant)
    cpu_before = cpu.sample(pids)
    feed = feeder.feed(variant, label, frames, fps)
    assert variant.progress is not None
    wait_until_stored(worker, variant.progress, variant.stored + frames)
    cpu_after = cpu.sample(pids)
    variant.stored += frames
    metrics_after = breakdown.parse_metrics(worker.metrics())
    spent = cpu.cpu_seconds(cpu_before, cpu_after)
    spent["ingest"] = float(feed["cpu_s"])  # type: ignore[arg-type]

    def mean_ms(name: str, **labels: str) -> float | None:
        return breakdown.histogram_mean_ms(metrics_before, metrics_after, name, **labels)

    window = breakdown.WindowTimes(
        ack_ms=feed.get("ack_mean_ms"),  # type: ignore[arg-type]
        publish_ms=mean_ms("framestream_stage_latency_seconds", stage="detect", step="publish"),
        flush_ms=mean_ms("framestream_stage_latency_seconds", stage="persist", step="flush"),
        insert_ms=mean_ms("framestream_sink_insert_seconds", table="frames"),
        triton=breakdown.triton_delta(triton_before, _triton(variant)),
    )
    polled_s = time.time() - float(feed["started"])  # type: ignore[arg-type]
    return Round(variant.name, label, frames, spent, window, feed, seconds=polled_s)


def idle_cpu_per_s(variants: list[Variant], broker_pid: int | None, seconds: float) -> dict[str, dict[str, float]]:
    """CPU-s per second of each variant's processes with no frames flowing."""
    before = {v.name: cpu.sample(v.pids(broker_pid)) for v in variants}
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    return {
        v.name: {
            role: value / elapsed
            for role, value in cpu.cpu_seconds(before[v.name], cpu.sample(v.pids(broker_pid))).items()
        }
        for v in variants
    }


def _triton(variant: Variant) -> dict[str, breakdown.TritonModelStats]:
    return breakdown.triton_stats(variant.settings.triton.url)
