"""At-least-once plumbing shared by the agents: holding events until their outputs are
delivered, and producing outputs in order, retried with ``STAGE_RETRY`` while the broker fails.

Why holding is needed: faust acks an event (marks its offset safe to commit) as
soon as the code iterating a stream asks for the next one -- and also when the
iteration is abandoned, e.g. an agent cancelled mid-batch at shutdown: ``take()``
acks its batch in a ``finally``, and so does the plain stream iterator. Either
would let the commit pass a frame whose outputs were never produced. So every
agent here *holds* its events (one more reference on the message: the counter
faust already uses when several streams read one topic) and *releases* them only
once their outputs are delivered. A held event is never acked, so its offset is
never committed, and a restarted worker reads it again. The commit itself
(``Consumer._commit_offsets``) flushes the producer first; it runs every
``broker_commit_interval`` and at shutdown, after the streams have drained.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import faust
from faust.types import EventT, StreamT

from streams.retry import Backoff, RetryPolicy, log_retry

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")
# The stages' retry of transient faults (Kafka delivery, Triton): 0.2 s, 0.4 s, ... +-20 %;
# each stage caps it at its worker's ``retry_max_backoff_s`` (``WorkerContext.retry``).
STAGE_RETRY = RetryPolicy(initial_s=0.2, max_s=10.0, multiplier=2.0, jitter=0.2)
# A DELIBERATELY BROKEN BUILD, for the reliability harness's own test only
# (tests/integration/test_chaos.py): with FRAMESTREAM_FAULT_COMMIT_BEFORE_DELIVERY=1, ``hold``
# holds nothing, so faust commits offsets before the outputs are delivered and a crash loses
# records. The one place the variable is read; never set it in a deployment.
COMMIT_BEFORE_DELIVERY = os.environ.get("FRAMESTREAM_FAULT_COMMIT_BEFORE_DELIVERY") == "1"


def hold(events: Sequence[EventT]) -> None:
    """Keep faust from acking these events on our behalf. Call before any ``await``."""
    if COMMIT_BEFORE_DELIVERY:
        return
    for event in events:
        event.message.incref()


async def release(stream: StreamT, events: Sequence[EventT]) -> None:
    """Drop our reference; once faust's own is gone too, the offset becomes committable."""
    for event in events:
        await stream.ack(event)


def release_now(events: Sequence[EventT]) -> None:
    """``release`` for code that has no stream at hand (a timer); skips the stream sensors."""
    for event in events:
        event.ack()


@dataclass(frozen=True)
class Outgoing:
    topic: faust.TopicT
    key: bytes | None
    value: bytes


async def produce_in_order(outgoing: Sequence[Outgoing], *, retry: RetryPolicy = STAGE_RETRY) -> int:
    """Produce and wait for delivery of every record, in order; returns the number of retries.

    When a delivery fails (the client already retried what it could), everything
    from the first failed record on is produced again: order is kept, and the
    duplicates a resend may create carry the same deterministic ids downstream.
    """
    backoff = Backoff(retry)
    start = retries = 0
    while start < len(outgoing):
        futures = [await item.topic.send(key=item.key, value=item.value, force=True) for item in outgoing[start:]]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = next((i for i, result in enumerate(results) if isinstance(result, BaseException)), None)
        if failed is None:
            return retries
        if isinstance(results[failed], asyncio.CancelledError):
            raise results[failed]
        start += failed
        retries += 1
        delay = backoff.next_delay()
        topic = outgoing[start].topic.get_topic_name()
        log_retry(log, f"delivery to {topic}", retries, delay, repr(results[failed]), topic=topic)
        await asyncio.sleep(delay)
    return retries


class OrderedPipeline(Generic[ResultT]):
    """Runs batches concurrently, up to ``capacity`` items in progress, finishing them in submission order.

    ``work`` (e.g. Triton requests) of a batch overlaps with the ``finish`` (produce and
    release) of the ones before, so the model is not left idle while outputs are
    delivered; ``finish`` waits for the previous batch's ``finish``, which keeps the
    outputs, and the commits, in offset order. Capacity counts items, not batches, so
    a trickle of one-frame batches still keeps several requests in flight. ``submit``
    waits while the pipeline is full: that is the backpressure on the stream.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._in_progress = 0
        self._room = asyncio.Condition()
        self._tail: asyncio.Task[None] | None = None

    async def submit(
        self, work: Callable[[], Awaitable[ResultT]], finish: Callable[[ResultT], Awaitable[None]], size: int = 1
    ) -> None:
        """Start a batch of ``size`` items; a batch larger than the capacity waits for an empty pipeline."""
        async with self._room:
            await self._room.wait_for(lambda: self._in_progress == 0 or self._in_progress + size <= self.capacity)
            self._in_progress += size
        previous = self._tail
        self._tail = asyncio.ensure_future(self._run(work, finish, previous, size))
        self._tail.add_done_callback(_log_failure)

    async def _run(
        self,
        work: Callable[[], Awaitable[ResultT]],
        finish: Callable[[ResultT], Awaitable[None]],
        previous: asyncio.Task[None] | None,
        size: int,
    ) -> None:
        try:
            result = await work()
            if previous is not None:
                await asyncio.wait([previous])  # its failure is logged there; order is what matters here
            await finish(result)
        finally:
            async with self._room:
                self._in_progress -= size
                self._room.notify_all()

    async def drain(self) -> None:
        if self._tail is not None:
            await asyncio.wait([self._tail])


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # Its events stay held (never committed): a restart reprocesses them.
        log.error("a batch failed; its events stay uncommitted", exc_info=task.exception())
