"""Hard-example capture for the monitor stage: frames worth labelling go to the example store and
to ``vision.hard-examples.v1`` (persisted to ClickHouse ``hard_examples``).

Usage (inside the monitor agent):
    capture = HardExampleCapture(context, topic=raw_topic(app, context.topics.hard_examples))
    outgoing = await capture.on_detections(message, drifting=False)   # -> records to produce
    outgoing += await capture.on_review(review)

Which frames: ``processors.hard_examples.HardExampleSelector``. The JPEG is not on the detections
topic: the detect stage notes where the frame lies on ``vision.frames.v1`` (``frame_partition``,
``frame_offset``) and this module reads that one record back (a group-less consumer, ``assign``).
A frame already gone (retention) is recorded without its image.

Reviews carry only the frame's ``event_id``. The frame's detections are found in a bounded
in-memory index of the frames this worker saw last (``index_frames``). Trade-off: no extra store and
no ClickHouse round trip on the stage's path (chDB allows one process per path, and the persist stage
owns it), but a review of a frame older than the index, or one that arrives after a restart, finds
nothing: it is logged, not captured. Detections and reviews are both keyed by camera, so a
camera's reviews reach the worker that saw its frames. Reviews are rare next to frames; an index
of 20,000 frames holds ~40 MB.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import faust
import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.hard_examples import FrameObservation, HardExampleSelector, Selected
from schemas import FrameDetections
from schemas.base import utc_now
from schemas.hard_examples import HardExample, example_id
from schemas.reviews import AlertReview
from streams.context import WorkerContext
from streams.delivery import Outgoing
from streams.example_store import ExampleStore, open_store
from streams.faces import FaceBlurrer, FaceDetectorClient, PrivacySettings
from streams.frame_reader import FrameFetchError, KafkaFrameFetcher

log = logging.getLogger(__name__)


class HardExampleSettings(BaseSettings):
    """Hard-example capture (env ``FRAMESTREAM_HARD_EXAMPLES_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_HARD_EXAMPLES_", extra="forbid")

    store_url: str = Field("", description="file:///path or s3://bucket/prefix; empty: <data_dir>/hard-examples")
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint (MinIO, Ceph); empty: AWS")
    uncertain_band: float = Field(0.1, ge=0, le=1, description="'uncertain': a score within this of the threshold")
    confused_iou: float = Field(0.5, gt=0, le=1, description="'confused': boxes of two classes overlapping this much")
    rare_fraction: float = Field(
        0.02, ge=0, lt=1, description="'rare_class': share of the recent detections below this"
    )
    rare_window: int = Field(1000, ge=1, description="recent detections per camera the share is taken over")
    rare_min_history: int = Field(200, ge=0, description="detections a camera needs before any class is 'rare'")
    min_interval_s: float = Field(
        60.0, ge=0, description="at most one example per camera and reason per this much capture time"
    )
    index_frames: int = Field(20000, ge=1, description="recent frames kept in memory to match reviews to")
    fetch_timeout_s: float = Field(10.0, gt=0, description="longest wait for one frame from the frames topic")

    def selector(self, score_threshold: float) -> HardExampleSelector:
        return HardExampleSelector(
            score_threshold,
            uncertain_band=self.uncertain_band,
            confused_iou=self.confused_iou,
            rare_fraction=self.rare_fraction,
            rare_window=self.rare_window,
            rare_min_history=min(self.rare_min_history, self.rare_window),
            min_interval_s=self.min_interval_s,
        )


class FrameIndex:
    """The last ``capacity`` frames' detections by event id, oldest dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: OrderedDict[str, FrameDetections] = OrderedDict()

    def add(self, message: FrameDetections) -> None:
        self._frames[message.event_id] = message
        self._frames.move_to_end(message.event_id)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def get(self, event_id: str) -> FrameDetections | None:
        return self._frames.get(event_id)


def observation(message: FrameDetections, *, drifting: bool = False, reviewed_false: bool = False) -> FrameObservation:
    detections = message.detections
    boxes = np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in detections], dtype=np.float64)
    return FrameObservation(
        camera_id=message.camera_id,
        captured_s=message.captured_at.timestamp(),
        class_names=tuple(d.class_name for d in detections),
        scores=np.array([d.score for d in detections], dtype=np.float64),
        boxes=boxes.reshape(len(detections), 4),
        drifting=drifting,
        reviewed_false=reviewed_false,
    )


def store_keys(message: FrameDetections) -> tuple[str, str]:
    """The image and predictions keys: one folder per camera, file stems unique across cameras
    (labelling formats that name files by stem need that)."""
    stem = f"{message.camera_id}/{message.camera_id}_{message.frame_seq:012d}"
    return f"{stem}.jpg", f"{stem}.json"


def hard_example_blurrer(context: WorkerContext, privacy: PrivacySettings) -> FaceBlurrer | None:
    """The face blurrer for cameras whose hard examples are blurred (``FRAMESTREAM_PRIVACY_*``); None if none are."""
    if not (privacy.blur_everything or privacy.blur_cameras):
        return None
    triton_url = context.settings.triton.url
    if not triton_url:
        raise ValueError(
            "hard examples are to be blurred (FRAMESTREAM_PRIVACY_BLUR_EVERYTHING or _BLUR_CAMERAS) with "
            "Triton's face_detector, but FRAMESTREAM_TRITON_URL is empty: set it"
        )
    triton = context.settings.triton
    faces = FaceDetectorClient(triton_url, timeout_s=triton.timeout_s, tls_ca_file=triton.tls_ca_file)
    return FaceBlurrer(faces, privacy, retry=context.retry)


class HardExampleCapture:
    def __init__(
        self,
        context: WorkerContext,
        *,
        topic: faust.TopicT,
        settings: HardExampleSettings | None = None,
        store: ExampleStore | None = None,
        fetcher: KafkaFrameFetcher | None = None,
        privacy: PrivacySettings | None = None,
    ) -> None:
        self.settings = settings or HardExampleSettings()  # read when the stage starts, not at import
        self.blurrer = hard_example_blurrer(context, privacy or PrivacySettings())
        self.context = context
        self.topic = topic
        self.retry = context.retry
        self.selector = self.settings.selector(context.settings.triton.score_threshold)
        self.index = FrameIndex(self.settings.index_frames)
        self.stop = threading.Event()
        self.store = store or open_store(
            self.settings.store_url,
            context.settings.data_dir,
            retry=self.retry,
            stop=self.stop,
            endpoint_url=self.settings.s3_endpoint_url or None,
        )
        self.fetcher = fetcher or KafkaFrameFetcher(
            context.settings.kafka, context.topics.frames, self.settings.fetch_timeout_s
        )
        # The fetcher's consumer and the store's client block: one thread, off the event loop.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hard-examples")

    async def on_detections(self, message: FrameDetections, *, drifting: bool) -> list[Outgoing]:
        """The hard-example records for this frame (none for most frames)."""
        self.index.add(message)
        selected = self.selector.update(observation(message, drifting=drifting))
        return await self._capture(message, selected, review_id=None) if selected else []

    async def on_review(self, review: AlertReview) -> list[Outgoing]:
        """A false-positive verdict brings its frame back as a ``reviewed_false`` example."""
        if review.verdict != "false_positive":
            return []
        message = self.index.get(review.event_id)
        if message is None:
            log.warning(
                "reviewed frame not in the recent-frame index; not captured",
                extra={"event_id": review.event_id, "review_id": review.review_id},
            )
            return []
        selected = self.selector.update(observation(message, reviewed_false=True))
        return await self._capture(message, selected, review_id=review.review_id) if selected else []

    async def _capture(
        self, message: FrameDetections, selected: tuple[Selected, ...], review_id: str | None
    ) -> list[Outgoing]:
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(self.executor, partial(self._fetch_image, message))
        if image is not None and self.blurrer is not None:
            image = await self.blurrer.blur_jpeg(message.camera_id, image, "hard_example")
        image_uri, predictions_uri = await loop.run_in_executor(
            self.executor, partial(self._store_frame, message, image)
        )
        sampled_at = utc_now()
        records = []
        for choice in selected:
            example = HardExample(
                example_id=example_id(message.event_id, choice.reason),
                camera_id=message.camera_id,
                frame_seq=message.frame_seq,
                event_id=message.event_id,
                reason=choice.reason,
                detail=choice.detail,
                captured_at=message.captured_at,
                sampled_at=sampled_at,
                image_uri=image_uri,
                predictions_uri=predictions_uri,
                width=message.width,
                height=message.height,
                model_name=message.model_name,
                model_version=message.model_version,
                predictions=message.detections,
                review_id=review_id if choice.reason.value == "reviewed_false" else None,
            )
            records.append(Outgoing(self.topic, message.camera_id.encode(), example.model_dump_json().encode()))
        return records

    def _store_frame(self, message: FrameDetections, image: bytes | None) -> tuple[str | None, str]:
        """On the executor thread: the frame's JPEG (if still on the topic) and predictions into the store."""
        image_key, predictions_key = store_keys(message)
        image_uri = None if image is None else self.store.put(image_key, image, "image/jpeg")
        predictions_uri = self.store.put(predictions_key, message.model_dump_json().encode(), "application/json")
        return image_uri, predictions_uri

    def _fetch_image(self, message: FrameDetections) -> bytes | None:
        from streams.retry import retry_sync

        if message.frame_partition is None or message.frame_offset is None:
            return None  # from a detect stage that did not note the frame's place
        image = retry_sync(
            partial(self.fetcher.fetch, message.frame_partition, message.frame_offset, message.event_id),
            policy=self.retry,
            transient=lambda error: isinstance(error, FrameFetchError),
            what="reading a hard example's frame",
            log=log,
            stop=self.stop,
        )
        if image is None:
            log.info(
                "hard example's frame is gone from the frames topic; stored without image",
                extra={"event_id": message.event_id},
            )
        return image

    def close(self) -> None:
        """After the worker stopped: stop retrying, close the consumer and the store client."""
        self.stop.set()
        self.executor.submit(self.fetcher.close).result()
        self.executor.submit(self.store.close).result()
        self.executor.shutdown(wait=True)
