"""Send a record a stage cannot use to the dead-letter topic, with the original bytes and why."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import faust
from faust.types import EventT

from schemas import DeadLetter
from schemas.base import utc_now
from streams.delivery import Outgoing
from streams.metrics import WorkerMetrics

log = logging.getLogger(__name__)

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


def dead_letter_record(
    topic: faust.TopicT,
    event: EventT,
    *,
    stage: Stage,
    reason: str,
    error_type: str,
    metrics: WorkerMetrics,
) -> Outgoing:
    """The dead letter for ``event`` as a record to produce (same key as the original record).

    The caller produces it with its other outputs (``produce_in_order``) before
    releasing ``event``: a bad record is never committed without its dead letter."""
    letter = build_dead_letter(event, stage=stage, reason=reason, error_type=error_type)
    log.warning(
        "dead letter",
        extra={"stage": stage, "error_type": error_type, "reason": reason[:500],
               "source_topic": letter.source_topic, "source_partition": letter.source_partition,
               "source_offset": letter.source_offset},
    )
    metrics.dead_letters.labels(stage=stage, reason=error_type).inc()
    return Outgoing(topic, event.message.key, letter.model_dump_json().encode())
