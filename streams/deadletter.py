"""The stages' one dead-letter rule: a record a stage cannot use goes to the dead-letter topic,
with the original bytes and why, and processing goes on.

Usage:
    rule = DeadLetterRule(deadletter_topic, "alert", metrics)
    outcome = await rule.guard_async(partial(evaluate, frame))  # its result, or a Rejection
    record = rule.record(event, outcome)  # when it is a Rejection: the dead letter to produce

A permanent fault (the record's own: invalid, undecodable, refused) and an error no check
foresaw (a bug, which must not crash the worker nor lose the record) become a dead letter.
A transient fault (``TRANSIENT_ERRORS``) is not the record's: it propagates, to be retried
where it happened, and the record stays uncommitted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple, TypeVar

import faust
from faust.types import EventT

from schemas import DeadLetter
from schemas.base import utc_now
from streams.delivery import Outgoing
from streams.metrics import WorkerMetrics
from streams.retry import RetryCancelled

log = logging.getLogger(__name__)
T = TypeVar("T")
# Not the record's fault, so never its dead letter: a fault its retry loop let through, or a stop.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, RetryCancelled)

Stage = str  # one of DeadLetter.stage's literals: "detect", "alert", "persist", ...
RawHeaders = Iterable[tuple[str, bytes | None]] | dict[str, bytes | None] | None


def decode_headers(headers: RawHeaders) -> dict[str, str]:
    """Record headers as text; bytes that are not UTF-8 are kept as backslash escapes, not dropped."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return {str(name): (value or b"").decode("utf-8", errors="backslashreplace") for name, value in items}


def build_dead_letter(event: EventT, *, stage: Stage, reason: str, error_type: str) -> DeadLetter:
    message = event.message
    return DeadLetter(
        stage=stage,
        reason=reason,
        error_type=error_type,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        key=message.key,
        headers=decode_headers(message.headers),
        original=message.value or b"",
        failed_at=utc_now(),
    )


class Rejection(NamedTuple):
    """Why a record goes to the dead-letter topic instead of its stage's output."""

    reason: str
    error_type: str
    unexpected: BaseException | None = None  # an error no check foresaw: logged with its traceback


class DeadLetterRule:
    """One stage's dead-letter rule (see the module doc): guards the work on one record, and
    turns a rejection into the dead letter to produce, logged once and counted."""

    def __init__(self, topic: faust.TopicT, stage: Stage, metrics: WorkerMetrics) -> None:
        self.topic = topic
        self.stage = stage
        self.metrics = metrics

    def guard(self, work: Callable[[], T]) -> T | Rejection:
        """``work()``'s result, or the Rejection for an unexpected error it raised."""
        try:
            return work()
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - a bug must not crash the worker nor lose the record
            return self.unexpected(error)

    async def guard_async(self, work: Callable[[], Awaitable[T]]) -> T | Rejection:
        """``guard`` for a coroutine."""
        try:
            return await work()
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - a bug must not crash the worker nor lose the record
            return self.unexpected(error)

    def unexpected(self, error: Exception) -> Rejection:
        return Rejection(f"unexpected error in {self.stage}: {error!r}", type(error).__name__, error)

    def letter(self, event: EventT, rejection: Rejection) -> DeadLetter:
        """The dead letter for ``event``, logged (with the traceback of an unexpected error) and counted."""
        letter = build_dead_letter(event, stage=self.stage, reason=rejection.reason, error_type=rejection.error_type)
        log.log(
            logging.ERROR if rejection.unexpected is not None else logging.WARNING,
            "dead letter: %s",
            rejection.reason[:500],
            exc_info=rejection.unexpected,
            extra={
                "stage": self.stage,
                "error_type": rejection.error_type,
                "source_topic": letter.source_topic,
                "source_partition": letter.source_partition,
                "source_offset": letter.source_offset,
            },
        )
        self.metrics.dead_letters.labels(stage=self.stage, reason=rejection.error_type).inc()
        return letter

    def record(self, event: EventT, rejection: Rejection) -> Outgoing:
        """The dead letter as a record to produce (same key as the original record).

        The caller produces it with its other outputs (``produce_in_order``) before
        releasing ``event``: a bad record is never committed without its dead letter."""
        letter = self.letter(event, rejection)
        return Outgoing(self.topic, event.message.key, letter.model_dump_json().encode())
