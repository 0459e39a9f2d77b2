"""What the per-record stages (alert, track, monitor, shadow) share: reading their detections
input, and the steps around their own handling of one record.

Usage:
    async def _handle(self, event: EventT) -> Handled:
        frame = parse_detections(event)
        ...  # a Rejection, the records to produce, or an outcome label

    await process_one(event, self._handle, step="monitor", dead_letters=self.dead_letters, retry=self.retry)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from faust.types import EventT
from pydantic import ValidationError

from schemas import FrameDetections
from streams.deadletter import DeadLetterRule, Rejection
from streams.delivery import Outgoing, produce_in_order
from streams.retry import RetryPolicy

# A handler's result: the records still to produce (outcome "ok"), why the record is a dead letter,
# or the outcome label of a record handled with nothing left to produce (the track stage's "replayed").
Handled = Sequence[Outgoing] | Rejection | str
Handler = Callable[[EventT], Awaitable[Handled]]


def parse_frame_detections(event: EventT) -> FrameDetections | Rejection:
    """The frame's detections, or why the record is not a FrameDetections."""
    try:
        return FrameDetections.model_validate_json(event.message.value or b"")
    except ValidationError as error:
        return Rejection(f"invalid FrameDetections: {error}", "ValidationError")


def parse_detections(event: EventT) -> FrameDetections | Rejection:
    """The frame's detections, or why the record cannot be used by a stage with per-camera state."""
    frame = parse_frame_detections(event)
    if isinstance(frame, Rejection):
        return frame
    key = (event.message.key or b"").decode("utf-8", errors="replace")
    if key != frame.camera_id:
        # A camera's state (alert cooldowns, tracker state, drift windows) is stored in the
        # record's partition, which is the key's: a frame keyed otherwise would use another's.
        return Rejection(f"record key {key!r} differs from camera_id {frame.camera_id!r}", "KeyMismatch")
    return frame


async def process_one(
    event: EventT, handle: Handler, *, step: str, dead_letters: DeadLetterRule, retry: RetryPolicy
) -> None:
    """Handle one record under the stage's dead-letter rule, then produce what it left to produce
    (its outputs, or its dead letter) and wait for delivery, so the record is released only after.

    Counted in ``frames`` (by ``dead_letters.stage`` and outcome), the consumer position and
    ``latency`` (by stage and ``step``)."""
    started = time.perf_counter()
    metrics = dead_letters.metrics
    handled = await dead_letters.guard_async(partial(handle, event))
    outgoing: Sequence[Outgoing]
    if isinstance(handled, Rejection):  # first: a Rejection is a tuple, so a Sequence too
        outgoing, outcome = [dead_letters.record(event, handled)], "deadletter"
    elif isinstance(handled, str):
        outgoing, outcome = [], handled
    else:
        outgoing, outcome = handled, "ok"
    if outgoing:
        await produce_in_order(outgoing, retry=retry)
    metrics.frames.labels(stage=dead_letters.stage, outcome=outcome).inc()
    metrics.processed(event.message.tp, event.message.offset)
    metrics.latency.labels(stage=dead_letters.stage, step=step).observe(time.perf_counter() - started)
