"""The faust App that runs the stream stages (detect, alert, persist) in one worker process.

Delivery is at-least-once; how the agents make sure of it is explained in
``streams/delivery.py``. Topics are created before the app starts (see
``framestream/commands/worker.py``), each read and written as raw bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum

import faust

from streams.context import StreamSettings, WorkerContext
from streams.kafka_config import BrokerProfile

TANSU_FETCH_MAX_WAIT_MS = 100


class Stage(str, Enum):
    DETECT = "detect"
    ALERT = "alert"
    PERSIST = "persist"


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
    settings: StreamSettings,
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
