"""The faust App that runs the stream stages (detect, alert, persist) in one worker process.

Delivery is at-least-once; how the agents make sure of it is explained in
``streams/delivery.py``. Topics are created before the app starts (see
``framestream/commands/worker.py``), each read and written as raw bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import faust
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from framestream.settings import BrokerProfile, Settings
from processors.rules import RuleSet
from streams.metrics import WorkerMetrics
from streams.topics import TopicNames

COOLDOWNS_TABLE = "cooldowns"
TANSU_FETCH_MAX_WAIT_MS = 100


class Stage(str, Enum):
    DETECT = "detect"
    ALERT = "alert"
    PERSIST = "persist"


class WorkerSettings(BaseSettings):
    """Stream-worker tuning (env ``FRAMESTREAM_WORKER_*``). Kept here, beside the agents they tune,
    rather than in ``framestream.settings``, because only ``framestream worker`` reads them."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_WORKER_", extra="forbid")

    detect_max_batch: int = Field(8, ge=1, le=1024, description="frames per detect micro-batch")
    detect_max_wait_s: float = Field(0.02, gt=0, le=10, description="longest wait to fill a micro-batch")
    detect_pipeline_depth: int = Field(
        2, ge=1, le=16, description="frames in progress: this many times max(batch, Triton requests in flight)"
    )
    triton_ready_timeout_s: float = Field(300.0, gt=0, description="wait for the model at start")
    persist_max_rows: int = Field(5000, ge=1, description="rows of one table buffered before a ClickHouse flush")
    persist_max_interval_s: float = Field(1.0, gt=0, le=60, description="longest time a message waits for its flush")
    commit_interval_s: float = Field(1.0, gt=0, le=60, description="how often acked offsets are committed")
    retry_max_backoff_s: float = Field(10.0, gt=0, description="ceiling of the retry backoff for transient faults")
    shutdown_timeout_s: float = Field(60.0, gt=0, description="SIGTERM: longest wait for batches in hand")
    bind_host: str = Field("127.0.0.1", description="address /metrics and faust's web server listen on "
                                                   "(0.0.0.0 in a container, so Prometheus can scrape it)")
    lag_interval_s: float = Field(5.0, gt=0, description="how often the consumer-lag gauge is refreshed")


@dataclass(frozen=True)
class WorkerContext:
    """What every stage needs; built once per worker process."""

    settings: Settings
    worker: WorkerSettings
    topics: TopicNames
    metrics: WorkerMetrics
    worker_id: str
    rules: RuleSet | None = None  # the alert stage's rules, loaded (and validated) before anything starts
    closers: list[Callable[[], None]] = field(default_factory=list)  # run after the worker stops


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"detect,alert"`` -> stages, in pipeline order; unknown names raise ``ValueError``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {stage.value: stage for stage in Stage}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"unknown stage(s) {unknown or names!r}; choose from {', '.join(known)}")
    return tuple(stage for stage in Stage if stage.value in names)


def app_id(prefix: str, stages: Iterable[Stage]) -> str:
    """The consumer group: one per stage set, so two ``detect`` workers share the frames' partitions."""
    return f"{prefix}framestream-" + "-".join(stage.value for stage in sorted(stages, key=list(Stage).index))


def create_app(
    settings: Settings,
    stages: Sequence[Stage],
    web_port: int | None,
    *,
    context: WorkerContext,
) -> faust.App:
    """A faust App with the given stages' agents registered. Topics must exist beforehand."""
    from streams.kafka_config import faust_broker_settings

    datadir = settings.data_dir / "faust" / context.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id(settings.kafka.topic_prefix, stages),
        store="rocksdb://",
        datadir=str(datadir),
        # Topics are created up front with the right partition count; Tansu would auto-create
        # unknown ones with its own, and the assignor's leader topic is not needed.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind=context.worker.bind_host,
        broker_commit_interval=context.worker.commit_interval_s,
        table_standby_replicas=0,
        **faust_broker_settings(settings.kafka),  # broker URLs, offsets from earliest, Tansu's profile
    )
    if settings.kafka.profile is BrokerProfile.TANSU:
        shorten_fetch_wait(app, TANSU_FETCH_MAX_WAIT_MS)
    _register_stages(app, stages, context)
    return app


def shorten_fetch_wait(app: faust.App, wait_ms: int) -> None:
    """Make the app's consumer long-poll for ``wait_ms`` instead of faust's hard-coded 1500 ms.

    Tansu answers a fetch of several partitions only after about half its max wait even when
    records are there (measured here with aiokafka on a 4-partition topic: 1500 ms -> 722 ms
    per record, 500 -> 222, 100 -> 22; one partition: 2 ms). With faust's 1500 ms every hop of
    the pipeline would add ~0.7 s. Apache Kafka answers as soon as data arrives, so only the
    tansu profile calls this. ``_fetch_max_wait_ms`` is what AIOKafkaConsumer.start() hands to
    its Fetcher; setting it before start is the one way in, as faust passes a literal.
    """
    from faust.transport.drivers import aiokafka as driver

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: driver.Transport) -> object:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    app.transport.Consumer = Consumer


def _register_stages(app: faust.App, stages: Sequence[Stage], context: WorkerContext) -> None:
    # Imported here: each stage pulls its own dependencies (tritonclient, chDB) only when run.
    if Stage.DETECT in stages:
        from streams import detect

        detect.register(app, context)
    if Stage.ALERT in stages:
        from streams import alert

        alert.register(app, context)
    if Stage.PERSIST in stages:
        from streams import persist

        persist.register(app, context)
    from streams import metrics

    metrics.register_consumer_metrics(app, context.metrics, context.worker.lag_interval_s)


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Keys and values stay bytes: faust acks and skips a value that fails to deserialize, so
    decoding happens inside the agent, where a failure can go to the dead-letter topic."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

