"""Detect stage: JPEG frames in, one ``FrameDetections`` per frame out.

Frames are micro-batched (``take_events``: at most ``detect_max_batch`` frames, or
what arrived within ``detect_max_wait_s``); the frames of a batch go to Triton as the
rows of as few requests as ``detect_rows_per_request`` allows (one gRPC call and one
Triton request for up to 16 frames, instead of one each), up to ``triton.max_in_flight``
requests at once. One bad image fails its whole request (INVALID_ARG), so such a request
is asked again one image per request, which finds the culprit for the dead-letter topic.
Several batches are in progress at once (``pending_frames_capacity``), so Triton
keeps working while a finished batch's outputs are delivered; outputs are produced in
offset order all the same, so per-camera (= per-partition) order holds, and a
batch is released for commit only once every output is delivered.

Bad headers and images Triton rejects go to the dead-letter topic; Triton being
unavailable is retried with backoff for as long as it takes, which stops
consumption instead of skipping frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import faust
from faust.types import EventT
from pydantic import ValidationError

from processors.detector import MAX_BATCH, ObjectDetections
from schemas import BoundingBox, Detection, FrameDetections, FrameMeta, StageTimings
from schemas.base import utc_now
from schemas.coco import COCO_CLASSES
from streams.classification import ClassifyStep
from streams.context import WorkerContext, raw_topic
from streams.deadletter import TRANSIENT_ERRORS, DeadLetterRule, Rejection
from streams.delivery import OrderedPipeline, Outgoing, hold, produce_in_order, release
from streams.inference import DetectorClient, InferenceRejected, retry_transient

log = logging.getLogger(__name__)
STAGE = "detect"


@dataclass(frozen=True)
class FrameArrival:
    """When a frame was produced, picked up and batched (epoch seconds), for the stage timings."""

    produced_at: float | None
    picked_up_at: float
    batched_at: float


@dataclass(frozen=True)
class Frame:
    """A frame of a micro-batch on its way to Triton: its place in the batch, image and metadata."""

    index: int
    image: bytes
    meta: FrameMeta
    arrival: FrameArrival


def arrival_of(event: EventT, batched_at: float) -> FrameArrival:
    message = event.message
    now_wall, now_mono = time.time(), time.monotonic()
    picked_up_mono = message.time_in if message.time_in is not None else now_mono
    # The monitor stamps time_in with the monotonic clock; shift it onto the wall clock.
    picked_up = now_wall - (now_mono - picked_up_mono)
    return FrameArrival(message.timestamp, picked_up, batched_at)


def timings_of(meta: FrameMeta, arrival: FrameArrival, triton_s: float) -> StageTimings:
    def ms(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else max(0.0, (end - start) * 1000.0)

    return StageTimings(
        ingest_ms=ms(meta.captured_at.timestamp(), arrival.produced_at),
        queue_ms=ms(arrival.produced_at, arrival.picked_up_at),
        batch_wait_ms=ms(arrival.picked_up_at, arrival.batched_at),
        triton_ms=triton_s * 1000.0,
    )


def to_detections(meta: FrameMeta, found: ObjectDetections) -> tuple[Detection, ...]:
    """Typed detections with deterministic ids ``<camera>:<seq>:<index>`` (a replay yields the same)."""
    return tuple(
        Detection(
            detection_id=f"{meta.frame_id}:{index}",
            class_id=int(class_id),
            class_name=COCO_CLASSES[int(class_id)],
            score=min(1.0, max(0.0, float(score))),
            box=BoundingBox(x1=float(box[0]), y1=float(box[1]), x2=float(box[2]), y2=float(box[3])),
        )
        for index, (box, score, class_id) in enumerate(zip(found.boxes, found.scores, found.class_ids, strict=True))
    )


def parse_frame(event: EventT) -> FrameMeta | Rejection:
    """The frame's metadata from its headers, or why the record cannot be a frame."""
    if not event.message.value:
        return Rejection("record has no value (expected JPEG bytes)", "EmptyRecord")
    try:
        return FrameMeta.from_headers(event.message.headers)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'headers'}: {e['msg']}" for e in error.errors())
        return Rejection(f"invalid frame headers: {problems}", "ValidationError")
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        return Rejection(f"invalid frame headers: {error}", type(error).__name__)


class DetectStage:
    """Turns a micro-batch of frame events into detections and dead letters."""

    def __init__(self, context: WorkerContext, detections: faust.TopicT, deadletter: faust.TopicT) -> None:
        triton = context.settings.triton
        self.context = context
        self.metrics = context.metrics
        self.detections_topic = detections
        self.dead_letters = DeadLetterRule(deadletter, STAGE, self.metrics)
        self.retry = context.retry
        self.client: DetectorClient | None = None  # made in start(): grpc.aio binds to the running loop
        # Our own bound (same as the client's) so the in-flight gauge and triton_ms see only requests on the wire.
        self.slots = asyncio.Semaphore(triton.max_in_flight)
        self.model_version = ""
        self.classify_step: ClassifyStep | None = None  # frames of cameras with a classifier

    async def start(self) -> None:
        triton = self.context.settings.triton
        self.client = DetectorClient(
            triton.url,
            model_name=triton.model_name,
            max_in_flight=triton.max_in_flight,
            timeout_s=triton.timeout_s,
            tls_ca_file=triton.tls_ca_file,
        )
        # No frame is consumed before the model answers; waiting is not skipping.
        ready = partial(self.client.wait_ready, self.context.worker.triton_ready_timeout_s)
        await retry_transient(ready, what="waiting for Triton", retry=self.retry)
        self.model_version = await retry_transient(self.client.model_version, what="Triton model metadata")
        self.classify_step = ClassifyStep(
            triton.url, self.retry, triton.max_in_flight, triton.timeout_s, triton.tls_ca_file
        )
        log.info(
            "detector ready",
            extra={"triton_url": self.context.settings.triton.url, "model_version": self.model_version},
        )

    async def infer_batch(self, events: Sequence[EventT]) -> list[FrameDetections | Rejection]:
        """Every frame of the batch through Triton at once: its rows in few requests (bounded by ``slots``)."""
        batched_at = time.time()
        self.metrics.batch_size.labels(stage=STAGE).observe(len(events))
        outcomes: dict[int, FrameDetections | Rejection] = {}
        frames: list[Frame] = []
        for index, event in enumerate(events):
            meta = self.dead_letters.guard(partial(parse_frame, event))
            if isinstance(meta, Rejection):
                outcomes[index] = meta
            else:
                frames.append(Frame(index, event.message.value, meta, arrival_of(event, batched_at)))
        for frame in frames:
            if not frame.meta.detector:  # a classifier-only camera: no detector call, no detections
                empty = partial(self._outcome, frame.meta, frame.arrival, ObjectDetections.empty(), 0.0)
                outcomes[frame.index] = self.dead_letters.guard(empty)
        detected = [frame for frame in frames if frame.meta.detector]
        rows = min(MAX_BATCH, self.context.worker.detect_rows_per_request)
        chunks = [detected[start : start + rows] for start in range(0, len(detected), rows)]
        for results in await asyncio.gather(*(self._detect_chunk(chunk) for chunk in chunks)):
            outcomes.update(results)
        await self._classify(frames, outcomes)
        return [outcomes[index] for index in range(len(events))]

    async def _classify(self, frames: list[Frame], outcomes: dict[int, FrameDetections | Rejection]) -> None:
        """Each frame of a camera with a classifier gets its verdict (or, if Triton refuses the
        image, goes to the dead-letter topic); a classifier-only frame names the classifier as its model."""
        wanted = {
            frame.index: frame
            for frame in frames
            if frame.meta.classifier is not None and isinstance(outcomes[frame.index], FrameDetections)
        }
        if not wanted:
            return
        assert self.classify_step is not None, "start() first"
        verdicts = await self.classify_step.classify([(i, f.meta.classifier or "", f.image) for i, f in wanted.items()])
        for index, (verdict, seconds) in verdicts.items():
            outcome = outcomes[index]
            if isinstance(verdict, Rejection) or isinstance(outcome, Rejection):
                outcomes[index] = verdict if isinstance(verdict, Rejection) else outcome
                continue
            update: dict[str, object] = {"classification": verdict}
            if not wanted[index].meta.detector:  # the classifier's round trip is the frame's Triton time
                timings = outcome.timings.model_copy(update={"triton_ms": seconds * 1000.0})
                update |= {"model_name": verdict.model_name, "model_version": verdict.model_version, "timings": timings}
            outcomes[index] = outcome.model_copy(update=update)

    async def _detect_chunk(self, chunk: list[Frame]) -> dict[int, FrameDetections | Rejection]:
        """One Triton request for the chunk's images; each frame's outcome by its index in the batch."""
        results, triton_s = await self._infer([frame.image for frame in chunk])
        return {
            frame.index: self.dead_letters.guard(partial(self._outcome, frame.meta, frame.arrival, result, triton_s))
            for frame, result in zip(chunk, results, strict=True)
        }

    def _outcome(
        self, meta: FrameMeta, arrival: FrameArrival, result: ObjectDetections | Rejection, triton_s: float
    ) -> FrameDetections | Rejection:
        if isinstance(result, Rejection):
            return result
        timings = timings_of(meta, arrival, triton_s)
        for step, value in (
            ("queue", timings.queue_ms),
            ("batch_wait", timings.batch_wait_ms),
            ("triton", timings.triton_ms),
        ):
            if value is not None:
                self.metrics.latency.labels(stage=STAGE, step=step).observe(value / 1000.0)
        try:
            return self._frame_detections(meta, result, timings)
        except (ValidationError, ValueError, IndexError) as error:
            # e.g. a class id outside COCO or a box the schema refuses: the frame is kept, as a dead letter.
            return Rejection(f"detector output does not fit FrameDetections: {error}", type(error).__name__)

    async def emit_batch(
        self, stream: faust.StreamT, events: Sequence[EventT], outcomes: Sequence[FrameDetections | Rejection]
    ) -> None:
        """Produce the outputs in offset order (a camera's frames share a partition), then release."""
        started = time.perf_counter()
        outgoing = [self._record(event, outcome) for event, outcome in zip(events, outcomes, strict=True)]
        retries = await produce_in_order(outgoing, retry=self.retry)
        self.metrics.retries.labels(stage=STAGE, target="kafka").inc(retries)
        await release(stream, events)
        self.metrics.latency.labels(stage=STAGE, step="publish").observe(time.perf_counter() - started)
        for event, outcome in zip(events, outcomes, strict=True):
            self.metrics.processed(event.message.tp, event.message.offset)
            ok = isinstance(outcome, FrameDetections)
            self.metrics.frames.labels(stage=STAGE, outcome="ok" if ok else "deadletter").inc()

    def _record(self, event: EventT, outcome: FrameDetections | Rejection) -> Outgoing:
        if isinstance(outcome, Rejection):
            return self.dead_letters.record(event, outcome)
        # Where the JPEG lies, so the monitor can read a hard example's image back (detections carry none).
        located = outcome.model_copy(
            update={"frame_partition": event.message.partition, "frame_offset": event.message.offset}
        )
        return Outgoing(self.detections_topic, located.camera_id.encode(), located.model_dump_json().encode())

    def _frame_detections(self, meta: FrameMeta, found: ObjectDetections, timings: StageTimings) -> FrameDetections:
        return FrameDetections(
            event_id=meta.frame_id,
            camera_id=meta.camera_id,
            frame_seq=meta.frame_seq,
            captured_at=meta.captured_at,
            detected_at=utc_now(),
            width=meta.width,
            height=meta.height,
            model_name=self.context.settings.triton.model_name,
            model_version=found.model_version or self.model_version,  # the version that answered
            detections=to_detections(meta, found),
            stats=meta.stats,
            timings=timings,
        )

    async def _infer(self, images: list[bytes]) -> tuple[list[ObjectDetections | Rejection], float]:
        """The images' detections (or why Triton refused one) and the request's round trip; retried
        while Triton is unavailable, never skipped."""
        retried = self.metrics.retries.labels(stage=STAGE, target="triton")
        return await retry_transient(
            partial(self._infer_once, images), what="Triton request", retry=self.retry, on_retry=lambda _: retried.inc()
        )

    async def _infer_once(self, images: list[bytes]) -> tuple[list[ObjectDetections | Rejection], float]:
        try:
            found, seconds = await self._request(images)
            return list(found), seconds
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - refused (INVALID_ARG) or unexpected: the image's fault?
            if len(images) == 1:
                return [self._rejection(error)], 0.0
        # One bad image fails the request of all: ask again one image per request to find which.
        singles = await asyncio.gather(*(self._infer_once([image]) for image in images))
        return [found[0] for found, _ in singles], max(seconds for _, seconds in singles)

    def _rejection(self, error: Exception) -> Rejection:
        if isinstance(error, InferenceRejected):
            return Rejection(str(error), type(error).__name__)  # the reason is Triton's own message
        return self.dead_letters.unexpected(error)

    async def _request(self, images: list[bytes]) -> tuple[list[ObjectDetections], float]:
        triton = self.context.settings.triton
        assert self.client is not None, "start() first"
        async with self.slots:
            with self.metrics.request_in_flight():
                started = time.perf_counter()
                found = await self.client.detect_in_one_request(images, triton.score_threshold, triton.iou_threshold)
                return found, time.perf_counter() - started


def pending_frames_capacity(context: WorkerContext) -> int:
    """Frames in progress at once: enough for a full batch being delivered while the next ones
    keep every Triton slot busy, whether batches arrive full or one frame at a time."""
    worker, triton = context.worker, context.settings.triton
    return worker.detect_pipeline_depth * max(worker.detect_max_batch, triton.max_in_flight)


def register(app: faust.App, context: WorkerContext) -> None:
    frames = raw_topic(app, context.topics.frames)
    stage = DetectStage(context, raw_topic(app, context.topics.detections), raw_topic(app, context.topics.deadletter))
    worker = context.worker

    @app.agent(frames, name=STAGE)
    async def detect(stream: faust.StreamT) -> None:
        await stage.start()
        batches = OrderedPipeline[list[FrameDetections | Rejection]](pending_frames_capacity(context))
        window = timedelta(seconds=worker.detect_max_wait_s)
        async for events in stream.take_events(worker.detect_max_batch, within=window):
            # Held first, before any await: take_events acks a batch as soon as this body returns,
            # and the batch is still being processed then (see streams/delivery.py).
            hold(events)
            await batches.submit(
                partial(stage.infer_batch, events), partial(stage.emit_batch, stream, events), size=len(events)
            )
