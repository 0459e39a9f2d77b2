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

TANSU_FETCH_MAX_WAIT_MS = 100  # the consumer's fetch long-poll on Tansu: see streams/faust_patches.py


class Stage(str, Enum):
    DETECT = "detect"
    TRACK = "track"
    ALERT = "alert"
    PERSIST = "persist"
    MONITOR = "monitor"
    SHADOW = "shadow"


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
    # Before any table or agent exists: every patch to faust's private parts, version-checked.
    from streams import faust_patches

    tansu = settings.kafka.profile is BrokerProfile.TANSU
    faust_patches.apply(app, fetch_max_wait_ms=TANSU_FETCH_MAX_WAIT_MS if tansu else None)
    _register_stages(app, stages, context)
    return app


def _register_stages(app: faust.App, stages: Sequence[Stage], context: WorkerContext) -> None:
    # Imported here: each stage pulls its own dependencies (tritonclient, chDB) only when run.
    if Stage.DETECT in stages:
        from streams import detect

        detect.register(app, context)
    if Stage.TRACK in stages:
        from streams import track

        track.register(app, context)
    if Stage.ALERT in stages:
        from streams import alert

        alert.register(app, context)
    if Stage.PERSIST in stages:
        from streams import persist

        persist.register(app, context)
    if Stage.MONITOR in stages:
        from streams import monitor

        monitor.register(app, context)
    if Stage.SHADOW in stages:
        from streams import shadow

        shadow.register(app, context)
    from streams import metrics

    metrics.register_consumer_metrics(app, context.metrics, context.worker.lag_interval_s)
