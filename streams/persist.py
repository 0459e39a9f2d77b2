"""Persist stage: detections, alerts and dead letters into ClickHouse, in batches.

One agent reads the three topics as raw bytes and feeds ``ClickHouseSink``. Its
events stay held (uncommittable, see ``streams/delivery.py``) until the flush
that wrote their rows returns; only then are they released for commit. A flush
happens when the sink says so (``persist_max_rows`` buffered, or the oldest row
has waited ``persist_max_interval_s``, a short deadline: a frame is stored well
within half a second), checked after every micro-batch and by a timer ticking
four times per deadline, so a quiet stream is flushed on time too. Replays after a crash re-insert
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
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import faust
from faust.types import EventT
from pydantic import ValidationError

from schemas import Alert, DeadLetter, FrameDetections
from schemas.camera_health import CameraHealth
from schemas.hard_examples import HardExample
from schemas.model_agreement import ModelAgreement
from schemas.model_alerts import ModelAlert
from schemas.reviews import AlertReview
from schemas.tracks import FrameTracks
from streams.context import WorkerContext, raw_topic
from streams.deadletter import DeadLetterRule, Rejection
from streams.delivery import Outgoing, hold, produce_in_order, release_now
from streams.sinks.clickhouse import ClickHouseSink, PermanentInsertError
from streams.sinks.clickhouse_db import connect, migrate
from streams.sinks.rows import Persistable, RowConversionError, message_id

log = logging.getLogger(__name__)
STAGE = "persist"
TAKE_MAX = 500  # events handed to the sink at a time; the sink decides when to flush


@dataclass(frozen=True)
class Buffered:
    event: EventT
    kind: str  # detections | alerts | deadletters | hard_examples


class PersistStage:
    """The sink plus the events whose rows it holds; one lock serialises adds and flushes."""

    def __init__(self, context: WorkerContext, sink: ClickHouseSink, deadletter: faust.TopicT) -> None:
        self.context = context
        self.metrics = context.metrics
        self.sink = sink
        self.dead_letters = DeadLetterRule(deadletter, STAGE, self.metrics)
        self.retry = context.retry
        self.models = {
            context.topics.detections: (FrameDetections, "detections"),
            context.topics.alerts: (Alert, "alerts"),
            context.topics.deadletter: (DeadLetter, "deadletters"),
            context.topics.hard_examples: (HardExample, "hard_examples"),
            context.topics.tracks: (FrameTracks, "tracks"),
            context.topics.model_alerts: (ModelAlert, "model_alerts"),
            context.topics.alert_reviews: (AlertReview, "alert_reviews"),
            context.topics.camera_health: (CameraHealth, "camera_health"),
            context.topics.model_agreement: (ModelAgreement, "model_agreement"),
        }
        self.held: list[EventT] = []  # every event since the last flush, stored or not
        self.buffered: dict[str, Buffered] = {}  # message id -> its record, for what ClickHouse refuses
        self.lock = asyncio.Lock()
        # chDB and clickhouse-connect block: run them off the event loop, always on the same thread.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    async def add(self, events: Sequence[EventT]) -> None:
        async with self.lock:
            self.held.extend(events)
            rejected = [rejection for event in events if (rejection := self._add_one(event)) is not None]
            await self._produce(rejected)
            self.metrics.batch_size.labels(stage=f"{STAGE}_take").observe(len(events))
            if self.sink.should_flush():
                await self._flush()

    async def flush_if_due(self, *, now: bool = False) -> None:
        """Flush what is due; ``now``: whatever is held (the worker is stopping)."""
        async with self.lock:
            if self.held and (now or not self.buffered or self.sink.should_flush()):
                await self._flush()

    def _add_one(self, event: EventT) -> Outgoing | None:
        """Parse and buffer one record; returns the dead letter to produce when it cannot be stored."""
        model, kind = self.models[event.message.topic]
        stored = self.dead_letters.guard(partial(self._store, event, model))
        if isinstance(stored, Rejection):
            return self._reject(event, stored)
        self.buffered[message_id(stored)] = Buffered(event, kind)
        return None

    def _store(self, event: EventT, model: type[Persistable]) -> Persistable | Rejection:
        try:
            message = model.model_validate_json(event.message.value or b"")
            self.sink.add(message)
        except (ValidationError, RowConversionError) as error:
            return Rejection(f"cannot store as {model.__name__}: {error}", type(error).__name__)
        return message

    def _reject(self, event: EventT, rejection: Rejection) -> Outgoing | None:
        """A dead letter for ``event``; on the dead-letter topic itself, store one here instead of looping."""
        self.metrics.frames.labels(stage=STAGE, outcome="deadletter").inc()
        if event.message.topic != self.context.topics.deadletter:
            return self.dead_letters.record(event, rejection)
        unreadable = rejection._replace(reason=f"unreadable dead letter: {rejection.reason}")
        letter = self.dead_letters.letter(event, unreadable)
        try:
            self.sink.add(letter)
            self.buffered[message_id(letter)] = Buffered(event, "deadletters")
        except RowConversionError as error:  # not expected: the letter is built from plain bytes
            log.error(
                "cannot store an unreadable dead letter; it stays on the topic",
                extra={"offset": event.message.offset, "error": str(error)},
            )
        return None

    async def _produce(self, records: list[Outgoing]) -> None:
        if records:
            await produce_in_order(records, retry=self.retry)

    async def _flush(self) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self.executor, self.sink.flush)
                break
            except PermanentInsertError as refused:
                # The rest of that table is stored; dead-letter the culprits, flush the other tables.
                await self._produce(self._refused(refused))
        self.metrics.latency.labels(stage=STAGE, step="flush").observe(time.perf_counter() - started)
        self._count_persisted()
        events, self.held, self.buffered = self.held, [], {}
        release_now(events)  # their rows are in ClickHouse (or their dead letters on the topic)

    def _refused(self, refused: PermanentInsertError) -> list[Outgoing]:
        records = []
        for refused_id in refused.message_ids:
            buffered = self.buffered.pop(refused_id, None)
            if buffered is None:
                continue
            if buffered.event.message.topic == self.context.topics.deadletter:
                log.error(
                    "ClickHouse refused a dead letter; it stays on the topic",
                    extra={"message_id": refused_id, "error": str(refused.cause)},
                )
                continue
            self.metrics.frames.labels(stage=STAGE, outcome="deadletter").inc()
            rejection = Rejection(f"ClickHouse refused it: {refused.cause}", type(refused.cause).__name__)
            records.append(self.dead_letters.record(buffered.event, rejection))
        return records

    def _count_persisted(self) -> None:
        kinds = Counter(buffered.kind for buffered in self.buffered.values())
        for kind, count in kinds.items():
            self.metrics.persisted.labels(kind=kind).inc(count)
        self.metrics.frames.labels(stage=STAGE, outcome="ok").inc(len(self.buffered))
        self.metrics.batch_size.labels(stage=STAGE).observe(len(self.held))
        for event in self.held:
            self.metrics.processed(event.message.tp, event.message.offset)

    def close(self) -> None:
        """After the worker stopped. Rows still buffered belong to events never released (so never
        committed): they are read again by the next worker, and no retry loop may block the exit."""
        self.sink.cancel()
        self.executor.submit(self.sink.close).result()
        self.executor.shutdown(wait=True)


def open_sink(context: WorkerContext) -> ClickHouseSink:
    """Migrate up front, so a bad DSN or schema stops the worker before it consumes anything."""
    settings, data_dir = context.settings.clickhouse, context.settings.data_dir
    client = connect(settings, data_dir)
    try:
        migrate(client, settings.database, settings.ttl_days)
    finally:
        client.close()  # chDB: the sink opens the path again, from its own thread
    worker = context.worker
    return ClickHouseSink(
        lambda: connect(settings, data_dir),
        settings.database,
        max_rows=worker.persist_max_rows,
        max_interval_s=worker.persist_max_interval_s,
    )


def register(app: faust.App, context: WorkerContext) -> PersistStage:
    topics = context.topics
    stage = PersistStage(context, open_sink(context), raw_topic(app, topics.deadletter))
    context.closers.append(stage.close)
    source = raw_topic(
        app,
        topics.detections,
        topics.alerts,
        topics.deadletter,
        topics.hard_examples,
        topics.tracks,
        topics.model_alerts,
        topics.alert_reviews,
        topics.camera_health,
        topics.model_agreement,
    )
    # A row waits at most the deadline plus one tick (and its INSERT) before it is stored.
    window = timedelta(seconds=min(0.2, max(0.01, context.worker.persist_max_interval_s / 4)))

    @app.agent(source, name=STAGE)
    async def persist(stream: faust.StreamT) -> None:
        async for events in stream.take_events(TAKE_MAX, within=window):
            hold(events)  # first, before any await: released by the flush that writes their rows
            await stage.add(events)

    # A task, not an ``app.timer``: a timer ends at its first tick after SIGTERM, while faust's
    # shutdown still waits (``Consumer.wait_empty``) for the events whose rows are buffered here,
    # so a worker stopped with rows in hand hung until its shutdown deadline. This loop runs until
    # faust cancels the app's futures, after that wait, and once stopping it flushes at once.
    @app.task
    async def persist_flush_loop() -> None:
        while True:
            await asyncio.sleep(window.total_seconds())
            try:
                await stage.flush_if_due(now=app.should_stop)
            except Exception:  # the rows stay buffered and their events held: the next tick tries again
                log.exception("flush failed; retrying on the next tick")

    return stage
