"""What every stream stage is given: the settings it reads, its tuning, metrics and topics.

The stage modules (``detect``, ``alert``, ``persist``) import this module; ``streams.app``
imports the stages to register them. Nothing here imports a stage, so there is no cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import faust
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.rules import RuleSet
from streams.delivery import STAGE_RETRY
from streams.inference import DetectorClientSettings
from streams.kafka_config import KafkaSettings
from streams.metrics import WorkerMetrics
from streams.retry import RetryPolicy
from streams.sinks.clickhouse_db import ClickHouseSettings
from streams.topics import TopicNames


class StreamSettings(Protocol):
    """What the stages read from the composed configuration (``framestream.settings.Settings``)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def triton(self) -> DetectorClientSettings: ...
    @property
    def clickhouse(self) -> ClickHouseSettings: ...


class WorkerSettings(BaseSettings):
    """Stream-worker tuning (env ``FRAMESTREAM_WORKER_*``), beside the agents they tune."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_WORKER_", extra="forbid")

    detect_max_batch: int = Field(8, ge=1, le=1024, description="frames per detect micro-batch")
    detect_max_wait_s: float = Field(0.02, gt=0, le=10, description="longest wait to fill a micro-batch")
    detect_rows_per_request: int = Field(
        16, ge=1, le=16, description="frames of a micro-batch per Triton request (the detector takes 16); 1: one each"
    )
    detect_pipeline_depth: int = Field(
        2, ge=1, le=16, description="frames in progress: this many times max(batch, Triton requests in flight)"
    )
    triton_ready_timeout_s: float = Field(300.0, gt=0, description="wait for the model at start")
    persist_max_rows: int = Field(5000, ge=1, description="rows of one table buffered before a ClickHouse flush")
    persist_max_interval_s: float = Field(
        0.25,
        gt=0,
        le=60,
        description="longest time a message waits for its flush (each flush costs ~30-60 ms of "
        "CPU in chDB whatever its size, so shorter buys latency with CPU)",
    )
    commit_interval_s: float = Field(1.0, gt=0, le=60, description="how often acked offsets are committed")
    retry_max_backoff_s: float = Field(10.0, gt=0, description="ceiling of the retry backoff for transient faults")
    shutdown_timeout_s: float = Field(60.0, gt=0, description="SIGTERM: longest wait for batches in hand")
    bind_host: str = Field(
        "127.0.0.1",
        description="address /metrics and faust's web server listen on "
        "(0.0.0.0 in a container, so Prometheus can scrape it)",
    )
    lag_interval_s: float = Field(5.0, gt=0, description="how often the consumer-lag gauge is refreshed")
    track_frame_rate: float = Field(10.0, gt=0, le=1000, description="track stage: the cameras' nominal fps")
    track_lost_s: float = Field(2.0, gt=0, le=600, description="track stage: a track unseen this long is dropped")
    track_activation_score: float = Field(
        0.5, ge=0, le=1, description="track stage: detector score that starts a track (and splits ByteTrack's stages)"
    )


@dataclass(frozen=True)
class WorkerContext:
    """What every stage needs; built once per worker process."""

    settings: StreamSettings
    worker: WorkerSettings
    topics: TopicNames
    metrics: WorkerMetrics
    worker_id: str
    rules: RuleSet | None = None  # the alert and track stages' rules, loaded (and validated) by the caller
    closers: list[Callable[[], None]] = field(default_factory=list)  # run after the worker stops

    @property
    def retry(self) -> RetryPolicy:
        """How the stages retry a transient fault: ``STAGE_RETRY`` capped at this worker's ceiling."""
        return STAGE_RETRY.capped(self.worker.retry_max_backoff_s)


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Keys and values stay bytes: faust acks and skips a value that fails to deserialize, so
    decoding happens inside the agent, where a failure can go to the dead-letter topic."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def camera_table(
    app: faust.App, context: WorkerContext, name: str, changelog_topic: str, *, default: object, help: str
) -> faust.Table:
    """A stage's per-camera state: a RocksDB-backed table keyed by camera id whose changelog (JSON,
    compacted, created up front by ``create_deployment_topics``) is partitioned like the detections,
    so a camera's state lives with its partition, moves with it and is restored after a restart."""
    partitions = context.settings.kafka.partitions
    changelog = app.topic(
        changelog_topic,
        key_type=str,
        value_type=None,
        key_serializer="json",
        value_serializer="json",
        partitions=partitions,
        compacting=True,
        acks=False,
        internal=True,
    )
    return app.Table(
        name,
        default=default,
        key_type=str,
        value_type=None,
        partitions=partitions,
        changelog_topic=changelog,
        help=help,
    )
