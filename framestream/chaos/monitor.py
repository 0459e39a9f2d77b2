"""What the harness watches while the soak runs: consumer lag of every stage's group (asked
of the brokers, never of the workers) and the workers' memory, file descriptors and threads.

    lag = LagProbe(settings.kafka, pipeline.groups(), topics)
    lag.targets()                 # end offsets now: what a group must commit to have caught up
    lag.caught_up(targets)        # True once every group committed at least that far
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka_config import KafkaSettings, admin_config, consumer_config
from streams.topics import TopicNames

Offsets = dict[tuple[str, str, int], int]  # (group, topic, partition) -> offset


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
        config = consumer_config(kafka, group_id=f"chaos-lag-probe-{time.monotonic_ns()}")
        self.consumer = Consumer({**config, "log_level": 2})

    def end_offsets(self) -> dict[tuple[str, int], int]:
        topics = {topic for reads in self.reads.values() for topic in reads}
        return {
            (topic, p): self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1]
            for topic in topics
            for p in range(self.partitions)
        }

    def committed(self) -> Offsets:
        committed: Offsets = {}
        for group, reads in self.reads.items():
            request = [TopicPartition(topic, p) for topic in reads for p in range(self.partitions)]
            answer = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, request)], request_timeout=5
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

    def lag(self, targets: Offsets) -> int | None:
        """Records of ``targets`` not yet committed, summed (None: the brokers did not answer)."""
        try:
            committed = self.committed()
        except KafkaException:
            return None
        return sum(max(0, end - max(0, committed.get(key, -1))) for key, end in targets.items() if end > 0)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class ResourceSample:
    at_s: float
    rss_mb: float
    fds: int
    threads: int


@dataclass
class ProcessResources:
    """The first and latest samples of one process (pid) of a worker."""

    name: str
    pid: int
    started_s: float
    first: ResourceSample | None = None
    last: ResourceSample | None = None
    peak_rss_mb: float = 0.0

    @property
    def lifetime_s(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last.at_s - self.first.at_s


def sample_process(pid: int, at_s: float) -> ResourceSample | None:
    """RSS, open descriptors and threads from /proc (None once the process is gone)."""
    proc = Path("/proc") / str(pid)
    try:
        status = (proc / "status").read_text()
        fds = len(list((proc / "fd").iterdir()))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie
        return None
    rss_kb = int(fields["VmRSS"].split()[0])
    return ResourceSample(at_s, rss_kb / 1024.0, fds, int(fields["Threads"].strip()))
