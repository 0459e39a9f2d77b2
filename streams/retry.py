"""The one retry policy for transient faults: exponential backoff with jitter, never giving up.

Usage:
    TRITON_RETRY = RetryPolicy(initial_s=0.5, max_s=30.0, jitter=0.1)
    found = await retry_async(request, policy=TRITON_RETRY, transient=is_unavailable, what="detect", log=log)

Each use keeps its own settings (a named constant, or a settings field, beside the code
that retries); this module is the one place a delay is computed and a retry is logged.
A transient fault is retried for as long as it lasts: waiting pauses consumption, which
is the backpressure the pipeline wants, and nothing is skipped. To stop, cancel the task
(``retry_async``) or set the stop event (``retry_sync``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

T = TypeVar("T")
IsTransient = Callable[[Exception], bool]
OnRetry = Callable[[Exception], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Delays ``initial_s``, ``initial_s * multiplier``, ... up to ``max_s``, each scaled by a random
    factor in ``1 ± jitter`` so that workers failing together do not retry in step."""

    initial_s: float
    max_s: float
    multiplier: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_s) and self.initial_s > 0):
            raise ValueError(f"initial_s must be a positive number of seconds, got {self.initial_s!r}")
        if not (math.isfinite(self.max_s) and self.max_s >= self.initial_s):
            raise ValueError(f"max_s must be >= initial_s ({self.initial_s}), got {self.max_s!r}")
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1.0):
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (counted from 0)."""
        if attempt < 0:
            raise ValueError(f"attempt counts from 0, got {attempt}")
        # Compared in logarithms: a retry that goes on for days must not overflow a float.
        capped = attempt * math.log(self.multiplier) >= math.log(self.max_s / self.initial_s)
        base = self.max_s if capped else self.initial_s * self.multiplier**attempt
        if self.jitter == 0.0:
            return base
        return base * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def capped(self, max_s: float) -> RetryPolicy:
        """This policy with a lower or higher ceiling; a ceiling below ``initial_s`` lowers that too."""
        return replace(self, initial_s=min(self.initial_s, max_s), max_s=max_s)


@dataclass
class Backoff:
    """The successive delays of one policy, for loops that are not a single call to retry;
    ``reset()`` once the retried thing is healthy again."""

    policy: RetryPolicy
    attempts: int = 0

    def next_delay(self) -> float:
        delay = self.policy.delay(self.attempts)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


def log_retry(log: logging.Logger, what: str, attempt: int, delay_s: float, error: object, **extra: object) -> None:
    """The one retry log line: what failed, how many times, when it is tried again, and why."""
    log.warning(
        "%s failed (attempt %d), retrying in %.2f s: %s",
        what,
        attempt,
        delay_s,
        error,
        extra={"what": what, "attempt": attempt, "retry_in_s": round(delay_s, 3), "error": str(error)[:500], **extra},
    )


class RetryCancelled(RuntimeError):
    """``retry_sync``'s stop event was set while it waited to retry; the last fault is the cause."""


def _next_retry(
    backoff: Backoff,
    error: Exception,
    what: str,
    log: logging.Logger,
    on_retry: OnRetry | None,
    extra: Mapping[str, object],
) -> float:
    delay = backoff.next_delay()
    log_retry(log, what, backoff.attempts, delay, error, **extra)
    if on_retry is not None:
        on_retry(error)
    return delay


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    transient: IsTransient,
    what: str,
    log: logging.Logger,
    on_retry: OnRetry | None = None,
    extra: Mapping[str, object] | None = None,
) -> T:
    """Await ``operation()`` until it succeeds. An error ``transient`` accepts is logged, passed to
    ``on_retry`` and retried after the policy's delay; any other error propagates at once."""
    backoff = Backoff(policy)
    while True:
        try:
            return await operation()
        except Exception as error:
            if not transient(error):
                raise
            delay = _next_retry(backoff, error, what, log, on_retry, extra or {})
        await asyncio.sleep(delay)


def retry_sync(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    transient: IsTransient,
    what: str,
    log: logging.Logger,
    stop: threading.Event,
    on_retry: OnRetry | None = None,
    extra: Mapping[str, object] | None = None,
) -> T:
    """``retry_async`` for a thread: waits on ``stop``, and raises ``RetryCancelled`` once it is set."""
    backoff = Backoff(policy)
    while True:
        try:
            return operation()
        except Exception as error:
            if not transient(error):
                raise
            delay = _next_retry(backoff, error, what, log, on_retry, extra or {})
            if stop.wait(delay):
                raise RetryCancelled(f"stopped while retrying {what}") from error
