"""Persist stage: detections, alerts and dead letters into ClickHouse, in batches.

One agent reads the three topics as raw bytes and feeds ``ClickHouseSink``. Its
events stay held (uncommittable, see ``streams/delivery.py``) until the flush
that wrote their rows returns; only then are they released for commit. A flush
happens when the sink says so (``persist_max_rows`` buffered, or the oldest row
has waited ``persist_max_interval_s``), checked after every micro-batch and by a
timer, so a quiet stream is flushed on time too. Replays after a crash re-insert
rows with the same ids, which the tables deduplicate.

A record that is not valid JSON for its topic goes to the dead-letter topic --
except on the dead-letter topic itself, where it is stored as a dead letter
with the parse error as its reason instead of being produced again in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import faust
from faust.types import EventT
from pydantic import ValidationError

from framestream.services.clickhouse import connect, migrate
from schemas import Alert, DeadLetter, FrameDetections
from streams.app import WorkerContext, raw_topic
from streams.deadletter import build_dead_letter, dead_letter_record
from streams.delivery import Outgoing, hold, produce_in_order, release_now
from streams.sinks.clickhouse import ClickHouseSink
from streams.sinks.rows import RowConversionError

log = logging.getLogger(__name__)
STAGE = "persist"
TAKE_MAX = 500  # events handed to the sink at a time; the sink decides when to flush


class PersistStage:
    """The sink plus the events whose rows it holds; one lock serialises adds and flushes."""

    def __init__(self, context: WorkerContext, sink: ClickHouseSink, deadletter: faust.TopicT) -> None:
        self.context = context
        self.metrics = context.metrics
        self.sink = sink
        self.deadletter_topic = deadletter
        self.models = {
            context.topics.detections: (FrameDetections, "detections"),
            context.topics.alerts: (Alert, "alerts"),
            context.topics.deadletter: (DeadLetter, "deadletters"),
        }
        self.pending: list[EventT] = []
        self.pending_kinds: Counter[str] = Counter()
        self.lock = asyncio.Lock()
        # chDB and clickhouse-connect block: run them off the event loop, always on the same thread.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    async def add(self, events: Sequence[EventT]) -> None:
        async with self.lock:
            rejected = [rejection for event in events if (rejection := self._add_one(event)) is not None]
            if rejected:
                await produce_in_order(rejected, ceiling_s=self.context.worker.retry_max_backoff_s)
            self.pending.extend(events)
            self.metrics.batch_size.labels(stage=f"{STAGE}_take").observe(len(events))
            if self.sink.should_flush():
                await self._flush()

    async def flush_if_due(self, force: bool = False) -> None:
        async with self.lock:
            if self.pending and (force or self.sink.should_flush()):
                await self._flush()

    def _add_one(self, event: EventT) -> Outgoing | None:
        """Parse and buffer one record; returns the dead letter to produce when it cannot be stored."""
        topic = event.message.topic
        model, kind = self.models[topic]
        try:
            message = model.model_validate_json(event.message.value or b"")
            self.sink.add(message)
        except (ValidationError, RowConversionError) as error:
            if topic == self.context.topics.deadletter:
                return self._store_unreadable_dead_letter(event, error)
            self.metrics.frames.labels(stage=STAGE, outcome="deadletter").inc()
            return dead_letter_record(self.deadletter_topic, event, stage=STAGE,
                                      reason=f"cannot store as {model.__name__}: {error}",
                                      error_type=type(error).__name__, metrics=self.metrics)  # fmt: skip
        self.pending_kinds[kind] += 1
        return None

    def _store_unreadable_dead_letter(self, event: EventT, error: Exception) -> None:
        letter = build_dead_letter(event, stage=STAGE, reason=f"unreadable dead letter: {error}",
                                   error_type=type(error).__name__)  # fmt: skip
        self.metrics.dead_letters.labels(stage=STAGE, reason=type(error).__name__).inc()
        try:
            self.sink.add(letter)
            self.pending_kinds["deadletters"] += 1
        except RowConversionError as second:  # not expected: the letter is built from plain bytes
            log.error("cannot store an unreadable dead letter; it stays on the topic",
                      extra={"offset": event.message.offset, "error": str(second)})  # fmt: skip
        return None

    async def _flush(self) -> None:
        started = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(self.executor, self.sink.flush)
        self.metrics.latency.labels(stage=STAGE, step="flush").observe(time.perf_counter() - started)
        self.metrics.batch_size.labels(stage=STAGE).observe(len(self.pending))
        for kind, count in self.pending_kinds.items():
            self.metrics.persisted.labels(kind=kind).inc(count)
        for event in self.pending:
            self.metrics.processed(event.message.tp, event.message.offset)
        self.metrics.frames.labels(stage=STAGE, outcome="ok").inc(sum(self.pending_kinds.values()))
        events, self.pending, self.pending_kinds = self.pending, [], Counter()
        release_now(events)  # the rows are in ClickHouse: these offsets may be committed now

    def close(self) -> None:
        self.executor.submit(self.sink.close).result()
        self.executor.shutdown(wait=True)


def open_sink(context: WorkerContext) -> ClickHouseSink:
    """Connect and migrate up front, so a bad DSN or schema stops the worker before it consumes."""
    settings = context.settings.clickhouse
    client = connect(settings, context.settings.data_dir)
    migrate(client, settings.database, settings.ttl_days)
    worker = context.worker
    return ClickHouseSink(client, settings.database, max_rows=worker.persist_max_rows,
                          max_interval_s=worker.persist_max_interval_s)  # fmt: skip


def register(app: faust.App, context: WorkerContext) -> PersistStage:
    topics = context.topics
    stage = PersistStage(context, open_sink(context), raw_topic(app, topics.deadletter))
    source = raw_topic(app, topics.detections, topics.alerts, topics.deadletter)
    window = timedelta(seconds=min(0.2, context.worker.persist_max_interval_s))

    @app.agent(source, name=STAGE)
    async def persist(stream: faust.StreamT) -> None:
        async for events in stream.take_events(TAKE_MAX, within=window):
            hold(events)  # first, before any await: released by the flush that writes their rows
            await stage.add(events)

    @app.timer(interval=window.total_seconds())
    async def persist_flush_timer() -> None:
        await stage.flush_if_due()

    return stage
