"""When has a benchmark's worker stored N frames? Asked of the broker, not of the worker.

Polling the worker's /metrics would do, but every scrape costs the worker ~26 ms of CPU on
these 2 cores (prometheus_client renders ~30 KB of histograms): at 4 scrapes/s that is 5 % of
the machine, charged to the pipeline being measured. The broker knows too: every frame gives
one record on the detections topic, and the worker's consumer group commits its offset only
once the persist stage has stored the frame's rows (and the alert stage is done with it).
So the sum of the group's committed offsets on that topic counts stored frames, late by at
most a commit interval; one scrape of /metrics then confirms it. (When the last row went in
is read from ClickHouse afterwards, ``stored_at``, so the lateness does not bias frames/s.)

    progress = CommittedFrames(settings.kafka)
    wait_until_stored(worker, progress, rows=2000)
"""

from __future__ import annotations

import time

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from framestream.child_process import WorkerProcess
from streams.app import Stage, app_id
from streams.kafka_config import KafkaSettings, admin_config
from streams.topics import TopicNames

ALL_STAGES = (Stage.DETECT, Stage.ALERT, Stage.PERSIST)


class CommittedFrames:
    """The committed offsets of a ``detect,alert,persist`` worker's group on the detections topic, summed."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.admin = AdminClient(admin_config(kafka))
        self.group = app_id(kafka.topic_prefix, ALL_STAGES)
        topic = TopicNames(kafka.topic_prefix).detections
        self.partitions = [TopicPartition(topic, partition) for partition in range(kafka.partitions)]

    def committed(self) -> int:
        request = [ConsumerGroupTopicPartitions(self.group, self.partitions)]
        answer = self.admin.list_consumer_group_offsets(request, request_timeout=10)[self.group].result()
        return sum(max(0, tp.offset) for tp in answer.topic_partitions if tp.error is None)


def wait_until_stored(
    worker: WorkerProcess, progress: CommittedFrames, rows: float, timeout_s: float = 600.0, poll_s: float = 0.2
) -> None:
    """Wait until the worker has stored ``rows`` frame rows in all (see the module doc)."""
    deadline = time.monotonic() + timeout_s
    while progress.committed() < rows:
        _check(worker, deadline, rows, timeout_s)
        time.sleep(poll_s)
    while worker.metric("framestream_sink_rows_inserted_total", table="frames") < rows:
        _check(worker, deadline, rows, timeout_s)  # a resent detection counted twice: rarely needed
        time.sleep(0.5)


def _check(worker: WorkerProcess, deadline: float, rows: float, timeout_s: float) -> None:
    worker.raise_if_exited()
    if time.monotonic() > deadline:
        raise TimeoutError(f"{rows:.0f} frame rows not stored after {timeout_s:.0f}s; see {worker.log_path}")
