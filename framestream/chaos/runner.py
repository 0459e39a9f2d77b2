"""The soak loop: inject each scheduled fault when it is due, repair it after its ``down_s``,
and time how long the pipeline takes to recover from it.

    run = ChaosRun(stack, pipeline, schedule, duration_s=1800, seed=1)
    run.run()          # returns when the soak and its final drain are over; then run.records

Recovered means: the faulted process (worker, tritonserver, broker) is back and healthy, and
every stage's consumer group has committed at least the end offsets the topics had when the
fault was repaired: the backlog the fault caused is processed and committed. Faults overlap:
one is injected every ~15 s and a recovery can take longer than that; but a broker or Triton
fault waits until the previous one of its kind has recovered (a broker killed while the cluster
still re-replicates after the last one measures the pile-up, not the pipeline).
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from framestream.chaos.malformed import MalformedProducer
from framestream.chaos.monitor import LagProbeProcess, Offsets, ProcessResources, sample_process
from framestream.chaos.pipeline import Pipeline
from framestream.chaos.schedule import Fault, FaultKind
from framestream.services.kafka import LocalKafkaCluster, fetch_cluster_metadata
from framestream.services.stack import EmbeddedStack
from streams.topics import TopicNames

log = logging.getLogger(__name__)
TICK_S = 0.2
LAG_EVERY_S = 2.0
RESOURCES_EVERY_S = 10.0
RESOURCE_WARMUP_S = 30.0  # a worker's first sample is taken once it has run this long


@dataclass
class FaultRecord:
    """What happened to one scheduled fault; times are seconds since the soak began."""

    fault: Fault
    injected_s: float | None = None
    repaired_s: float | None = None
    recovered_s: float | None = None
    targets: Offsets | None = None
    timed_out: bool = False
    note: str = ""

    @property
    def recovery_s(self) -> float | None:
        if self.injected_s is None or self.recovered_s is None:
            return None
        return self.recovered_s - self.injected_s

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.fault.index,
            "kind": self.fault.kind.value,
            "what": self.fault.describe(),
            "scheduled_s": round(self.fault.at_s, 2),
            "injected_s": _round(self.injected_s),
            "repaired_s": _round(self.repaired_s),
            "recovered_s": _round(self.recovered_s),
            "recovery_s": _round(self.recovery_s),
            "timed_out": self.timed_out,
            "note": self.note,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class Crash:
    name: str
    at_s: float


@dataclass
class ChaosRun:
    stack: EmbeddedStack
    pipeline: Pipeline
    schedule: list[Fault]
    duration_s: float
    seed: int
    recovery_limit_s: float = 300.0
    late_limit_s: float = 180.0  # how long after the soak a fault deferred past its end may still go in
    records: list[FaultRecord] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)
    resources: dict[int, ProcessResources] = field(default_factory=dict)
    lag_samples: int = 0

    def __post_init__(self) -> None:
        kafka = self.pipeline.settings.kafka
        topics = TopicNames(kafka.topic_prefix)
        self.lag = LagProbeProcess(kafka, self.pipeline.groups(), topics)  # before any client of ours
        self.malformed = MalformedProducer(kafka, topics, random.Random(self.seed))
        self.records = [FaultRecord(fault) for fault in self.schedule]
        self._start = time.monotonic()
        self._down: dict[str, FaultRecord] = {}  # target key -> the fault holding it down
        self._starting: dict[str, Future[None]] = {}  # target key -> a restart in progress
        # Tritonserver and broker restarts take tens of seconds: they run here, so the soak loop
        # goes on meanwhile. These threads live until close(): a child dies with the thread that
        # started it (PR_SET_PDEATHSIG), so the threads that start children must outlive them.
        self._services = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chaos-restart")
        self._in_sync: tuple[float, bool] = (-1.0, False)

    @property
    def cluster(self) -> LocalKafkaCluster:
        assert self.stack.broker is not None
        service = self.stack.broker.service
        assert isinstance(service, LocalKafkaCluster)
        return service

    def now(self) -> float:
        return time.monotonic() - self._start

    def run(self) -> None:
        """The soak: faults until ``duration_s``, then every fault repaired and recovered (or timed out)."""
        self._start = time.monotonic()
        due = list(self.records)
        next_lag = next_resources = 0.0
        while self.now() < self.duration_s or (due and self.now() < self.duration_s + self.late_limit_s):
            now = self.now()
            self._repair_due(now)
            due = [record for record in due if not self._maybe_inject(record, now)]
            self._supervise()
            self.malformed.poll()
            if now >= next_lag:
                self._check_recoveries()
                next_lag = self.now() + LAG_EVERY_S
            if now >= next_resources:
                self._sample_resources()
                next_resources = self.now() + RESOURCES_EVERY_S
            time.sleep(TICK_S)
        for record in due:
            record.note = f"not injected: its target was still down {self.late_limit_s:.0f}s after the soak"
        while self._down:
            self._repair_due(float("inf"))
            self._supervise()
            time.sleep(TICK_S)
        self.wait_for_recoveries()

    def wait_for_recoveries(self) -> None:
        while any(self._recovering()):
            self._supervise()
            self._check_recoveries()
            time.sleep(LAG_EVERY_S)
        self._sample_resources()

    # -- faults ---------------------------------------------------------------------------

    def _target_key(self, fault: Fault) -> str:
        if fault.kind in (FaultKind.KILL, FaultKind.PAUSE):
            return fault.target
        return fault.kind.value  # one Triton, one broker down at a time, one burst at a time

    def _maybe_inject(self, record: FaultRecord, now: float) -> bool:
        fault = record.fault
        if fault.at_s > now or self._target_key(fault) in self._down:
            return False
        if fault.kind in (FaultKind.BROKER, FaultKind.TRITON) and self._still_recovering(fault.kind):
            return False  # one service fault at a time, each recovered before the next: no pile-up
        if fault.kind is FaultKind.BROKER and not self._cluster_in_sync():
            return False  # a second broker down would leave acks=all writes one in-sync replica
        record.injected_s = self.now()
        log.info("fault %d injected: %s", fault.index, fault.describe())
        print(f"  [{record.injected_s:7.1f}s] fault {fault.index:3d}: {fault.describe()}", flush=True)
        self._down[self._target_key(fault)] = record
        self._inject(fault, record)
        return True

    def _still_recovering(self, kind: FaultKind) -> bool:
        return any(record.fault.kind is kind for record in self._recovering())

    def _inject(self, fault: Fault, record: FaultRecord) -> None:
        if fault.kind is FaultKind.KILL:
            managed = self.pipeline.processes[fault.target]
            managed.down_by_harness = True
            managed.child.kill()
        elif fault.kind is FaultKind.PAUSE:
            managed = self.pipeline.processes[fault.target]
            managed.down_by_harness = managed.paused = True
            managed.child.pause()
        elif fault.kind is FaultKind.TRITON:
            triton = self.stack.triton
            assert triton is not None and triton._child is not None  # noqa: SLF001 - SIGKILL, not LocalTriton.stop()'s SIGTERM
            triton._child.kill()  # noqa: SLF001
        elif fault.kind is FaultKind.BROKER:
            self.cluster.node(int(fault.target)).kill()
        else:
            self.malformed.send(fault.target, fault.count)

    def close(self) -> None:
        """After the stack has stopped: the restart threads go (see ``__post_init__``)."""
        self._services.shutdown(wait=True)
        self.lag.close()

    def _repair_due(self, now: float) -> None:
        for key, record in list(self._down.items()):
            assert record.injected_s is not None
            if record.injected_s + record.fault.down_s > now:
                continue
            if key in self._starting:
                if not self._starting[key].done():
                    continue
                error = self._starting.pop(key).exception()
                if error is not None:
                    log.warning("restart after fault %d failed, retrying: %r", record.fault.index, error)
                    continue
            elif record.fault.kind in (FaultKind.TRITON, FaultKind.BROKER):
                self._starting[key] = self._services.submit(self._repair, record.fault)
                continue
            else:
                try:
                    self._repair(record.fault)
                except Exception as error:  # noqa: BLE001 - retried next tick; the run must go on
                    log.warning("repair of fault %d failed, retrying: %r", record.fault.index, error)
                    continue
            record.repaired_s = self.now()
            record.targets = self._targets()
            del self._down[key]

    def _repair(self, fault: Fault) -> None:
        if fault.kind is FaultKind.KILL:
            self.pipeline.restart(fault.target, new_id=fault.new_id)
        elif fault.kind is FaultKind.PAUSE:
            managed = self.pipeline.processes[fault.target]
            managed.child.resume()
            managed.paused = managed.down_by_harness = False
        elif fault.kind is FaultKind.TRITON:
            triton = self.stack.triton
            assert triton is not None
            triton.stop()  # cleans up after the killed server
            triton.start()  # waits until the models are ready
        elif fault.kind is FaultKind.BROKER:
            self.cluster.restart(int(fault.target), timeout_s=180)

    def _targets(self) -> Offsets | None:
        """End offsets now; None when the brokers do not answer (asked again on the next check)."""
        return self.lag.targets()

    # -- recovery, crashes, resources -----------------------------------------------------

    def _recovering(self) -> list[FaultRecord]:
        return [r for r in self.records if r.injected_s is not None and r.recovered_s is None and not r.timed_out]

    def _check_recoveries(self) -> None:
        """One read of the committed offsets, compared with each recovering fault's targets."""
        committed: Offsets | None = None
        for record in self._recovering():
            assert record.injected_s is not None
            if self.now() - record.injected_s > self.recovery_limit_s:
                record.timed_out = True
                continue
            if record.repaired_s is None or not self._target_healthy(record.fault):
                continue
            if record.targets is None:
                record.targets = self._targets()
                if record.targets is None:
                    continue
            committed = committed or self.lag.committed_or_none()
            if committed is None:
                return
            self.lag_samples += 1
            if self.lag.lag(record.targets, committed) == 0:
                record.recovered_s = self.now()

    def _target_healthy(self, fault: Fault) -> bool:
        if fault.kind in (FaultKind.KILL, FaultKind.PAUSE):
            return self.pipeline.processes[fault.target].healthy()
        if fault.kind is FaultKind.TRITON:
            return self.stack.triton is not None and self.stack.triton.is_running()
        if fault.kind is FaultKind.BROKER:
            return all(node.running for node in self.cluster.nodes)
        return True

    def _cluster_in_sync(self) -> bool:
        """Every replica of every partition in its ISR (asked at most every ``LAG_EVERY_S``)."""
        asked_at, answer = self._in_sync
        if self.now() - asked_at < LAG_EVERY_S:
            return answer
        answer = False
        if all(node.running for node in self.cluster.nodes):
            try:
                metadata = fetch_cluster_metadata(self.cluster.bootstrap_servers, timeout_s=5)
                answer = all(
                    meta.leader >= 0 and set(meta.isrs) == set(meta.replicas)
                    for topic in metadata.topics.values()
                    for meta in topic.partitions.values()
                )
            except Exception:  # noqa: BLE001 - not in sync as far as we can tell
                answer = False
        self._in_sync = (self.now(), answer)
        return answer

    def _supervise(self) -> None:
        for name in self.pipeline.supervise(self.now()):
            log.warning("%s exited without being asked to; restarted", name)
            print(f"  [{self.now():7.1f}s] {name} exited on its own (a crash): restarted", flush=True)
            self.crashes.append(Crash(name, self.now()))

    def _sample_resources(self) -> None:
        for managed in self.pipeline.processes.values():
            pid = managed.child.pid
            if pid is None or not managed.child.running or managed.paused:
                continue
            tracked = self.resources.get(pid)
            if tracked is None:
                tracked = self.resources[pid] = ProcessResources(managed.name, pid, managed.started_at - self._start)
            if self.now() - tracked.started_s < RESOURCE_WARMUP_S:
                continue
            sample = sample_process(pid, self.now())
            if sample is None:
                continue
            tracked.samples.append(sample)
