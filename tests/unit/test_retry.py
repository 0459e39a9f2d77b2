"""streams.retry: the one retry policy type, its backoff, and the retry-until-success helpers."""

from __future__ import annotations

import asyncio
import logging
import math
import threading

import pytest

from streams.retry import Backoff, RetryCancelled, RetryPolicy, log_retry, retry_async, retry_sync

log = logging.getLogger("tests.retry")
FAST = RetryPolicy(initial_s=0.001, max_s=0.002)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RetryPolicy(initial_s=0.2, max_s=10.0), [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]),
        (RetryPolicy(initial_s=0.5, max_s=30.0, multiplier=3.0), [0.5, 1.5, 4.5, 13.5, 30.0]),
        (RetryPolicy(initial_s=0.25, max_s=5.0, multiplier=1.0), [0.25, 0.25, 0.25]),
        (RetryPolicy(initial_s=2.0, max_s=2.0), [2.0, 2.0, 2.0]),
    ],
)
def test_delays_grow_by_the_multiplier_up_to_the_ceiling(policy: RetryPolicy, expected: list[float]) -> None:
    assert [policy.delay(attempt) for attempt in range(len(expected))] == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [1_100, 10**6])
def test_a_retry_that_goes_on_for_days_stays_at_the_ceiling(attempt: int) -> None:
    assert RetryPolicy(initial_s=0.2, max_s=15.0).delay(attempt) == 15.0


@pytest.mark.parametrize(("jitter", "attempt", "base"), [(0.2, 0, 0.2), (0.2, 9, 10.0), (0.1, 2, 0.8)])
def test_jitter_spreads_each_delay_within_its_fraction(jitter: float, attempt: int, base: float) -> None:
    policy = RetryPolicy(initial_s=0.2, max_s=10.0, jitter=jitter)
    delays = [policy.delay(attempt) for _ in range(200)]
    assert all(base * (1 - jitter) <= delay <= base * (1 + jitter) for delay in delays)
    assert len(set(delays)) > 1, "workers failing together must not retry in step"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"initial_s": 0.0, "max_s": 1.0}, "initial_s"),
        ({"initial_s": -1.0, "max_s": 1.0}, "initial_s"),
        ({"initial_s": math.nan, "max_s": 1.0}, "initial_s"),
        ({"initial_s": 2.0, "max_s": 1.0}, "max_s"),
        ({"initial_s": 1.0, "max_s": math.inf}, "max_s"),
        ({"initial_s": 1.0, "max_s": 2.0, "multiplier": 0.5}, "multiplier"),
        ({"initial_s": 1.0, "max_s": 2.0, "jitter": 1.0}, "jitter"),
        ({"initial_s": 1.0, "max_s": 2.0, "jitter": -0.1}, "jitter"),
    ],
)
def test_bad_settings_are_rejected(arguments: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RetryPolicy(**arguments)


def test_attempts_count_from_zero() -> None:
    with pytest.raises(ValueError, match="from 0"):
        RetryPolicy(initial_s=1.0, max_s=2.0).delay(-1)


@pytest.mark.parametrize(
    ("max_s", "expected_initial_s"),
    [
        (30.0, 0.2),
        (1.0, 0.2),
        (0.01, 0.01),  # a ceiling below the first delay lowers that too
    ],
)
def test_capped_changes_only_the_ceiling(max_s: float, expected_initial_s: float) -> None:
    policy = RetryPolicy(initial_s=0.2, max_s=10.0, multiplier=3.0, jitter=0.1)
    capped = policy.capped(max_s)
    assert (capped.initial_s, capped.max_s, capped.multiplier, capped.jitter) == (expected_initial_s, max_s, 3.0, 0.1)


def test_backoff_walks_the_policy_and_resets_when_healthy_again() -> None:
    backoff = Backoff(RetryPolicy(initial_s=1.0, max_s=4.0))
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert backoff.attempts == 4
    backoff.reset()
    assert (backoff.next_delay(), backoff.attempts) == (1.0, 1)


def test_one_retry_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tests.retry"):
        log_retry(log, "delivery to frames", 3, 1.234, ConnectionError("broker away"), camera="cam-1")
    (record,) = caplog.records
    assert record.getMessage() == "delivery to frames failed (attempt 3), retrying in 1.23 s: broker away"
    assert (record.attempt, record.retry_in_s, record.error, record.camera) == (3, 1.234, "broker away", "cam-1")


class Flaky:
    """Raises the given errors in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    async def call_async(self) -> str:
        return self()


def is_connection_error(error: Exception) -> bool:
    return isinstance(error, ConnectionError)


# (errors raised in turn, what comes out, calls made, retries logged)
RETRY_CASES = [
    ([], "done", 1, 0),
    ([ConnectionError("down")], "done", 2, 1),
    ([ConnectionError("down"), TimeoutError("slow"), ConnectionError("down")], TimeoutError, 2, 1),
    ([KeyError("bug")], KeyError, 1, 0),
    ([ConnectionError("down")] * 5, "done", 6, 5),
]


@pytest.mark.parametrize(("errors", "expected", "calls", "retries"), RETRY_CASES)
def test_retry_async_retries_transient_errors_only(
    errors: list[Exception], expected: object, calls: int, retries: int, caplog: pytest.LogCaptureFixture
) -> None:
    flaky, seen = Flaky(*errors), []
    run = retry_async(
        flaky.call_async, policy=FAST, transient=is_connection_error, what="op", log=log, on_retry=seen.append
    )
    with caplog.at_level(logging.WARNING, logger="tests.retry"):
        if isinstance(expected, type):
            with pytest.raises(expected):
                asyncio.run(run)
        else:
            assert asyncio.run(run) == expected
    assert (flaky.calls, len(seen), len(caplog.records)) == (calls, retries, retries)


@pytest.mark.parametrize(("errors", "expected", "calls", "retries"), RETRY_CASES)
def test_retry_sync_retries_transient_errors_only(
    errors: list[Exception], expected: object, calls: int, retries: int, caplog: pytest.LogCaptureFixture
) -> None:
    flaky, seen = Flaky(*errors), []

    def run() -> str:
        return retry_sync(
            flaky,
            policy=FAST,
            transient=is_connection_error,
            what="op",
            log=log,
            stop=threading.Event(),
            on_retry=seen.append,
        )

    with caplog.at_level(logging.WARNING, logger="tests.retry"):
        if isinstance(expected, type):
            with pytest.raises(expected):
                run()
        else:
            assert run() == expected
    assert (flaky.calls, len(seen), len(caplog.records)) == (calls, retries, retries)


def test_retry_async_never_gives_up_but_can_be_cancelled() -> None:
    flaky = Flaky(*[ConnectionError("down")] * 10_000)

    async def run_for_a_while() -> None:
        task = asyncio.ensure_future(
            retry_async(flaky.call_async, policy=FAST, transient=is_connection_error, what="op", log=log)
        )
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_for_a_while())
    assert flaky.calls > 10


def test_retry_sync_never_gives_up_but_stops_when_told() -> None:
    flaky, stop = Flaky(*[ConnectionError("down")] * 10_000), threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            retry_sync(flaky, policy=FAST, transient=is_connection_error, what="op", log=log, stop=stop)
        except RetryCancelled as error:
            raised.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=0.3)
    assert thread.is_alive(), "a transient fault is retried for as long as it lasts"
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and flaky.calls > 10
    assert len(raised) == 1 and isinstance(raised[0].__cause__, ConnectionError)
