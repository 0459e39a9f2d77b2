"""What the harness watches while the soak runs: consumer lag of every stage's group (asked
of the brokers, never of the workers) and the workers' memory, file descriptors and threads.

    lag = LagProbe(settings.kafka, pipeline.groups(), topics)
    lag.targets()                 # end offsets now: what a group must commit to have caught up
    lag.caught_up(targets)        # True once every group committed at least that far
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.kafka_config import KafkaSettings, admin_config
from streams.topics import TopicNames

log = logging.getLogger(__name__)
Offsets = dict[tuple[str, str, int], int]  # (group, topic, partition) -> offset
ANSWER_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 6.0  # an admin request's own limit, within the answer's


def group_topics(topics: TopicNames, groups: dict[str, str]) -> dict[str, list[str]]:
    """Consumer group -> the topics it reads (the stages of framestream/chaos/pipeline.py)."""
    reads = {
        "detect": [topics.frames],
        "alert": [topics.detections],
        "persist": [topics.detections, topics.alerts, topics.deadletter, topics.camera_health],
    }
    return {group: reads[stage] for stage, group in groups.items()}


class LagProbe:
    """Committed offsets against end offsets, for every group and partition it reads."""

    def __init__(self, kafka: KafkaSettings, groups: dict[str, str], topics: TopicNames) -> None:
        self.partitions = kafka.partitions
        self.reads = group_topics(topics, groups)
        self.admin = AdminClient({**admin_config(kafka), "log_level": 2})

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """Every partition's end offset, in one request per leader (ListOffsets, latest)."""
        topics = {topic for reads in self.reads.values() for topic in reads}
        wanted = {TopicPartition(topic, p): OffsetSpec.latest() for topic in topics for p in range(self.partitions)}
        answers = self.admin.list_offsets(wanted, request_timeout=REQUEST_TIMEOUT_S)
        return {(tp.topic, tp.partition): future.result().offset for tp, future in answers.items()}

    def committed(self) -> Offsets:
        committed: Offsets = {}
        for group, reads in self.reads.items():
            request = [TopicPartition(topic, p) for topic in reads for p in range(self.partitions)]
            answer = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, request)], request_timeout=REQUEST_TIMEOUT_S
            )[group].result()
            for tp in answer.topic_partitions:
                committed[(group, tp.topic, tp.partition)] = tp.offset if tp.error is None else -1
        return committed

    def targets(self) -> Offsets | None:
        """For every group and partition it reads, the end offset now (None: the brokers did not answer)."""
        try:
            ends = self.end_offsets()
        except KafkaException:
            return None
        return {
            (group, topic, p): ends[(topic, p)]
            for group, reads in self.reads.items()
            for topic in reads
            for p in range(self.partitions)
        }

    def committed_or_none(self) -> Offsets | None:
        try:
            return self.committed()
        except KafkaException:
            return None

    @staticmethod
    def lag(targets: Offsets, committed: Offsets) -> int:
        """Records of ``targets`` not yet committed, summed."""
        return sum(max(0, end - max(0, committed.get(key, -1))) for key, end in targets.items() if end > 0)

    def close(self) -> None:
        """Nothing to release: the admin client goes with the object."""


def _serve(connection: Connection, kafka: KafkaSettings, groups: dict[str, str], prefix: str) -> None:
    probe = LagProbe(kafka, groups, TopicNames(prefix))
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the harness is gone
            return
        answer = probe.targets() if request == "targets" else probe.committed_or_none()
        connection.send(answer)
        if answer is None:
            # A client that failed once around a broker restart kept failing in the 2026-12-01
            # runs (no recovery seen for 300 s, then lag 0 within 2 s of a fresh probe): start over.
            probe = LagProbe(kafka, groups, TopicNames(prefix))


class LagProbeProcess:
    """``LagProbe`` in a process of its own. librdkafka 2.x's admin client aborted the harness
    once (``rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0``, a broker down
    mid-request): here such an abort costs one answer, and the probe is started again."""

    def __init__(self, kafka: KafkaSettings, groups: dict[str, str], topics: TopicNames) -> None:
        self._args = (kafka, groups, topics.prefix)
        self._context = multiprocessing.get_context("spawn")
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self._connection, theirs = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(theirs, *self._args), daemon=True)
        self._process.start()

    def _ask(self, request: str) -> Offsets | None:
        try:
            self._connection.send(request)
            if self._connection.poll(ANSWER_TIMEOUT_S):
                return self._connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            pass
        log.warning("the lag probe did not answer (exit code %s); starting it again", self._process.exitcode)
        self._process.kill()
        self._process.join(10)
        self.restarts += 1
        self._start()
        return None

    def targets(self) -> Offsets | None:
        return self._ask("targets")

    def committed_or_none(self) -> Offsets | None:
        return self._ask("committed")

    lag = staticmethod(LagProbe.lag)

    def close(self) -> None:
        self._connection.close()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


@dataclass
class ResourceSample:
    at_s: float
    rss_mb: float
    fds: int  # every open descriptor
    threads: int
    # Descriptors other than per-thread /proc statistics files. chDB (ClickHouse) keeps
    # /proc/<pid>/task/<tid>/{stat,schedstat,io} open for each pool thread that ever ran part of
    # a query, so its count climbs towards 3 x its threads as queries spread over its pool.
    # Those are bounded by the threads, which are checked on their own; this count is where a
    # leaked socket or file shows.
    other_fds: int = 0


@dataclass
class ProcessResources:
    """Every sample of one process (pid) of a worker, oldest first."""

    name: str
    pid: int
    started_s: float
    samples: list[ResourceSample] = field(default_factory=list)

    @property
    def first(self) -> ResourceSample | None:
        return self.samples[0] if self.samples else None

    @property
    def last(self) -> ResourceSample | None:
        return self.samples[-1] if self.samples else None

    @property
    def midlife(self) -> ResourceSample | None:
        """The first sample at or past half the sampled lifetime: the baseline of the descriptor
        and thread checks.
        A leak keeps growing, so it grows over the second half too; a pool or cache that fills
        once, early (chDB's thread pool grows to its peak concurrency and keeps idle threads),
        does not."""
        if self.first is None or self.last is None:
            return None
        half = self.first.at_s + self.lifetime_s / 2
        return next(sample for sample in self.samples if sample.at_s >= half)

    @property
    def peak_rss_mb(self) -> float:
        return max((sample.rss_mb for sample in self.samples), default=0.0)

    @property
    def lifetime_s(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last.at_s - self.first.at_s


def sample_process(pid: int, at_s: float) -> ResourceSample | None:
    """RSS, open descriptors and threads from /proc (None once the process is gone)."""
    proc = Path("/proc") / str(pid)
    try:
        status = (proc / "status").read_text()
        targets = [_link_target(fd) for fd in (proc / "fd").iterdir()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie
        return None
    rss_kb = int(fields["VmRSS"].split()[0])
    thread_stats = sum(1 for target in targets if _THREAD_STATS.match(target))
    return ResourceSample(
        at_s, rss_kb / 1024.0, len(targets), int(fields["Threads"].strip()), len(targets) - thread_stats
    )


_THREAD_STATS = re.compile(r"^/proc/\d+/task/\d+/(stat|schedstat|io)$")


def _link_target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed since the directory was listed
        return ""
