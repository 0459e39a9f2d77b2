"""The pipeline under test: the embedded stack (three Kafka nodes, tritonserver, chDB), the
``framestream setup`` it needs, and one process per stage plus ingest, each restartable.

    with ChaosStack(settings, out) as stack:
        pipeline = Pipeline(stack, out)
        pipeline.start()
        pipeline.supervise(now)   # restarts any worker that exited without the harness asking

Every child is started from the main thread: ``ChildProcess`` ties a child's life to the
thread that started it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from framestream.child_process import ChildProcess, WorkerProcess
from framestream.services.stack import EmbeddedStack
from framestream.settings import EmbeddedBroker, Settings
from streams.app import Stage, app_id

SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"
# The soak's workers use a 10 s consumer-group session (faust's BROKER_SESSION_TIMEOUT; 60 s by
# default) so that a SIGKILLed member leaves its group in seconds and a pause of 12-18 s is
# longer than the session: the group rebalances while the process is frozen, as after a long GC.
SESSION_TIMEOUT_S = 10.0
WORKER_ENV = {
    "BROKER_SESSION_TIMEOUT": str(SESSION_TIMEOUT_S),
    "BROKER_HEARTBEAT_INTERVAL": "3",
    "FRAMESTREAM_SNAPSHOTS_ENABLED": "false",  # alert snapshots read frames back: not under test here
    "FRAMESTREAM_WORKER_LAG_INTERVAL_S": "2",
    "FRAMESTREAM_WORKER_RETRY_MAX_BACKOFF_S": "2",
    "FRAMESTREAM_WORKER_DETECT_MAX_BATCH": "4",
    "FRAMESTREAM_WORKER_SHUTDOWN_TIMEOUT_S": "30",
    "FRAMESTREAM_CLICKHOUSE_TTL_DAYS": "3650",
    "PYTHONUNBUFFERED": "1",
}
CAMERAS_YAML = """\
cameras:
  - id: street
    source: {{kind: file, path: {media}/street.mp4, loop: true}}
    fps: {fps}
    resize_width: 640
  - id: park
    source: {{kind: file, path: {media}/park.mp4, loop: true}}
    fps: {fps}
    resize_width: 640
  - id: snapshots
    source: {{kind: folder, path: {media}/photos, loop: true}}
    fps: {fps}
    resize_width: 640
"""
RULES_YAML = """\
rules:
  - id: person-seen
    description: Person seen
    classes: [person]
    min_score: 0.4
    cooldown_s: 5
  - id: animal-seen
    description: Dog or horse seen
    classes: [dog, horse]
    min_score: 0.4
    cooldown_s: 8
  - id: vehicle-seen
    description: Vehicle seen
    classes: [car, truck, bicycle]
    min_score: 0.4
    cooldown_s: 10
"""
STAGES = ("detect", "alert", "persist")


def chaos_settings(settings: Settings, out: Path, fps: float = 0.5) -> Settings:
    """Everything embedded and fresh: a three-node cluster, its own tritonserver, chDB under ``out``."""
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": "", "topic_prefix": f"chaos-{os.getpid()}."})
    triton = settings.triton.model_copy(update={"url": ""})
    clickhouse = settings.clickhouse.model_copy(update={"dsn": ""})
    out.mkdir(parents=True, exist_ok=True)
    cameras, rules = out / "cameras.yaml", out / "rules.yaml"
    cameras.write_text(CAMERAS_YAML.format(media=(SAMPLES / "media").resolve(), fps=fps))
    rules.write_text(RULES_YAML)
    return settings.model_copy(
        update={
            "kafka": kafka,
            "triton": triton,
            "clickhouse": clickhouse,
            "data_dir": out / "state",
            "cameras_file": cameras,
            "rules_file": rules,
            "embedded_broker": EmbeddedBroker.KAFKA_CLUSTER,
        }
    )


@dataclass
class Managed:
    """A process the harness runs: its current child, and why it is down if it is."""

    name: str
    stage: str  # "ingest" or a worker stage
    child: ChildProcess
    worker_ids: list[str] = field(default_factory=list)
    down_by_harness: bool = False  # killed or paused on purpose: not a crash
    paused: bool = False
    unexpected_exits: list[float] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def alive(self) -> bool:
        return self.child.running

    def healthy(self) -> bool:
        """Running, not paused, and (a worker) answering /metrics."""
        if not self.child.running or self.paused:
            return False
        return not isinstance(self.child, WorkerProcess) or self.child.metrics() is not None


class Pipeline:
    """Ingest and one worker per stage, as separate processes, started and restarted from here."""

    def __init__(self, stack: EmbeddedStack, out: Path, extra_env: dict[str, str] | None = None) -> None:
        self.stack = stack
        self.out = out
        self.env = {
            **os.environ,
            **{key: value for key, value in stack.env().items() if value},
            **WORKER_ENV,
            **(extra_env or {}),
        }
        self.processes: dict[str, Managed] = {}
        self._ids = 0

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    def setup(self) -> None:
        ChildProcess.framestream(["setup"], log_path=self.out / "logs" / "setup.log", env=self.env).run_to_end(300)

    def groups(self) -> dict[str, str]:
        """Stage -> its consumer group."""
        prefix = self.settings.kafka.topic_prefix
        return {stage: app_id(prefix, [Stage(stage)]) for stage in STAGES}

    def start(self, timeout_s: float = 240.0) -> None:
        for stage in STAGES:
            self.processes[stage] = Managed(stage, stage, self._worker(stage, stage), worker_ids=[stage])
        for managed in self.processes.values():
            managed.child.start()
            managed.started_at = time.monotonic()
        deadline = time.monotonic() + timeout_s
        for managed in list(self.processes.values()):
            assert isinstance(managed.child, WorkerProcess)
            managed.child.wait_for_metrics_endpoint(max(1.0, deadline - time.monotonic()))
        self.processes["ingest"] = Managed("ingest", "ingest", self._ingest())
        self.processes["ingest"].child.start()
        self.processes["ingest"].started_at = time.monotonic()

    def _worker(self, stage: str, worker_id: str) -> WorkerProcess:
        return WorkerProcess(
            ["--stages", stage], worker_id=worker_id, env=self.env, log_path=self.out / "logs" / f"{worker_id}.log"
        )

    def _ingest(self) -> ChildProcess:
        args = ["ingest", "--no-create-topics", "--health-every", "10"]
        return ChildProcess.framestream(args, log_path=self.out / "logs" / "ingest.log", env=self.env, grace_s=30)

    def restart(self, name: str, *, new_id: bool = False) -> None:
        """Start ``name`` again; ``new_id``: as another machine would, under a worker id never used."""
        managed = self.processes[name]
        if managed.child.running:
            managed.child.kill()
        if new_id and isinstance(managed.child, WorkerProcess):
            self._ids += 1
            worker_id = f"{managed.stage}-moved-{self._ids}"
            managed.worker_ids.append(worker_id)
            managed.child = self._worker(managed.stage, worker_id)
        managed.child.start()
        managed.started_at = time.monotonic()
        managed.down_by_harness = managed.paused = False

    def supervise(self, now: float) -> list[str]:
        """Restart every process that exited on its own (a crash); returns their names."""
        crashed = []
        for managed in self.processes.values():
            if managed.down_by_harness or managed.child.running:
                continue
            managed.unexpected_exits.append(now)
            crashed.append(managed.name)
            self.restart(managed.name)
        return crashed

    def stop_ingest(self) -> None:
        self.processes["ingest"].child.stop(grace_s=30)
        self.processes["ingest"].down_by_harness = True

    def stop_workers(self) -> dict[str, int | None]:
        codes = {}
        for name in STAGES:
            managed = self.processes[name]
            managed.down_by_harness = True
            managed.child.resume()
            codes[name] = managed.child.stop(grace_s=60)
        return codes

    def kill_all(self) -> None:
        for managed in self.processes.values():
            managed.down_by_harness = True
            managed.child.resume()
            managed.child.kill()
