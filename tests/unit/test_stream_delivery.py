"""At-least-once plumbing of the stream workers: holding events, ordered batches, resends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.types.tuples import Message

from streams.delivery import STAGE_RETRY, OrderedPipeline, Outgoing, hold, produce_in_order
from streams.retry import Backoff, RetryPolicy


def delivered_message(offset: int = 0) -> Message:
    """A message as faust's conductor hands it to one stream: one reference per reading stream."""
    message = Message("frames", 0, offset, 0.0, 0, [], b"cam-1", b"jpeg", checksum=None)
    message.incref(1)
    return message


def test_a_held_event_survives_the_ack_faust_does_on_its_own() -> None:
    message = delivered_message()
    hold([SimpleNamespace(message=message)])
    assert message.ack(consumer=None) is False, "take()'s own ack must not make the offset committable"
    assert not message.acked
    assert message.ack(consumer=None) is True, "our release is the final ack"
    assert message.acked


def test_without_hold_faust_acks_at_once() -> None:
    message = delivered_message()
    assert message.ack(consumer=None) is True


@pytest.mark.parametrize(
    ("ceiling_s", "expected_bases"),
    [
        (10.0, [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]),
        (0.5, [0.2, 0.4, 0.5, 0.5]),
    ],
)
def test_backoff_doubles_up_to_its_ceiling(ceiling_s: float, expected_bases: list[float]) -> None:
    backoff = Backoff(STAGE_RETRY.capped(ceiling_s))
    for base in expected_bases:
        assert base * 0.8 <= backoff.next_delay() <= base * 1.2


def test_ordered_pipeline_finishes_in_submission_order_and_bounds_pending_batches() -> None:
    finished: list[int] = []
    running = peak = 0

    async def work(index: int, seconds: float) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(seconds)
        running -= 1
        return index

    async def finish(index: int) -> None:
        finished.append(index)

    async def scenario() -> None:
        pipeline = OrderedPipeline[int](capacity=2)
        # Later batches finish their work first; their outputs must still come out in order.
        for index, seconds in enumerate([0.08, 0.01, 0.05, 0.0, 0.02]):
            await pipeline.submit(lambda i=index, s=seconds: work(i, s), finish)
        await pipeline.drain()

    asyncio.run(scenario())
    assert finished == [0, 1, 2, 3, 4]
    assert peak == 2


@pytest.mark.parametrize(
    ("sizes", "capacity", "expected_peak"),
    [
        ([1, 1, 1, 1, 1, 1], 4, 4),  # one-item batches: several at once
        ([3, 3, 3], 4, 1),  # two would not fit: one at a time
        ([2, 2, 2, 2], 4, 2),
        ([6, 1], 4, 1),  # larger than the capacity: runs alone, nothing is refused
    ],
)
def test_ordered_pipeline_capacity_counts_items(sizes: list[int], capacity: int, expected_peak: int) -> None:
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def finish(_: None) -> None:
        return None

    async def scenario() -> None:
        pipeline = OrderedPipeline[None](capacity)
        for size in sizes:
            await pipeline.submit(work, finish, size=size)
        await pipeline.drain()

    asyncio.run(scenario())
    assert peak == expected_peak


class FlakyTopic:
    """Stands in for a faust topic: ``send`` returns a delivery future, failing on chosen attempts."""

    def __init__(self, fail_on_attempts: set[int]) -> None:
        self.fail_on_attempts = fail_on_attempts
        self.attempts = 0
        self.delivered: list[bytes] = []

    def get_topic_name(self) -> str:
        return "out"

    async def send(self, *, key: bytes | None, value: bytes, force: bool) -> asyncio.Future:
        self.attempts += 1
        future = asyncio.get_running_loop().create_future()
        if self.attempts in self.fail_on_attempts:
            future.set_exception(ConnectionError("broker went away"))
        else:
            self.delivered.append(value)
            future.set_result(None)
        return future


def test_produce_in_order_resends_from_the_first_failure_keeping_order() -> None:
    topic = FlakyTopic(fail_on_attempts={2})
    records = [Outgoing(topic, b"k", value) for value in (b"a", b"b", b"c")]
    retries = asyncio.run(produce_in_order(records, retry=RetryPolicy(initial_s=0.01, max_s=0.01)))
    assert retries == 1
    # b failed; b and everything after it are produced again, so the last copy of each is in order.
    assert topic.delivered == [b"a", b"c", b"b", b"c"]


def test_produce_in_order_without_failures_sends_each_once() -> None:
    topic = FlakyTopic(fail_on_attempts=set())
    records = [Outgoing(topic, None, value) for value in (b"a", b"b")]
    assert asyncio.run(produce_in_order(records)) == 0
    assert topic.delivered == [b"a", b"b"]
