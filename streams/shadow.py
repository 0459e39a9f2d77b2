"""Shadow stage: a candidate detector beside the served one, on a sample of live frames.

Usage:
    FRAMESTREAM_SHADOW_CANDIDATE_DIR=triton_models/detector/2 framestream worker --stages shadow

The candidate never answers the stream: it is not loaded in Triton (where unversioned requests
go to the highest loaded version) but run here, in process, with the code the served model runs
(``processors/detector.py`` around the version's own ONNX file and ``detector.json`` spec; a
folder without a spec is NanoDet's). One agent reads ``vision.detections.v1`` -- the served
model's answer for every frame -- in its own consumer group; for every ``sample_every``-th frame
of a camera it reads the JPEG back from ``vision.frames.v1`` (``streams/frame_reader.py``), runs
the candidate at the served thresholds, and produces their agreement (``processors/agreement.py``)
to ``vision.model-agreement.v1``, stored by the persist stage in ClickHouse ``model_agreement``.
At least once like every stage; the agreement id is ``<event_id>:<candidate>``, so a replay
overwrites its own row. A frame already gone from the frames topic is skipped (it is a sample).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import faust
import numpy as np
from faust.types import EventT
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.agreement import LabelledBox, agreement
from processors.decode import DecodeError
from processors.decoders import NANODET_SPEC, DetectorSpec, load_spec
from processors.detector import ObjectDetections, Thresholds, detect_batch
from schemas import FrameDetections
from schemas.base import utc_now
from schemas.coco import class_name
from schemas.model_agreement import ModelAgreement
from streams.context import WorkerContext, raw_topic
from streams.deadletter import DeadLetterRule, Rejection
from streams.delivery import Outgoing, hold, release
from streams.frame_reader import FrameFetchError, KafkaFrameFetcher
from streams.records import parse_frame_detections, process_one
from streams.retry import retry_sync

log = logging.getLogger(__name__)
STAGE = "shadow"
SPEC_FILE = "detector.json"


class ShadowSettings(BaseSettings):
    """Shadow mode (env ``FRAMESTREAM_SHADOW_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_SHADOW_", extra="forbid")

    candidate_dir: Path | None = Field(
        None, description="a model version folder: model.onnx (+ detector.json; without it, NanoDet's decoding)"
    )
    candidate: str = Field("", description="its name in the records; default '<model folder>:<version folder>'")
    sample_every: int = Field(10, ge=1, le=100_000, description="compare every Nth frame of a camera (frame_seq % N)")
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="IoU at which two same-class boxes agree")
    fetch_timeout_s: float = Field(10.0, gt=0)
    threads: int = Field(1, ge=1, le=64, description="ONNX Runtime threads for the candidate")


@dataclass(frozen=True)
class Candidate:
    name: str
    onnx: Path
    spec: DetectorSpec


def load_candidate(settings: ShadowSettings) -> Candidate:
    """The candidate the settings name; ``ValueError`` saying what is missing."""
    folder = settings.candidate_dir
    if folder is None:
        raise ValueError("the shadow stage needs FRAMESTREAM_SHADOW_CANDIDATE_DIR: a model version folder")
    onnx = Path(folder) / "model.onnx"
    if not onnx.is_file():
        raise ValueError(f"FRAMESTREAM_SHADOW_CANDIDATE_DIR={folder}: no model.onnx there")
    spec_path = Path(folder) / SPEC_FILE
    spec = load_spec(spec_path) if spec_path.is_file() else NANODET_SPEC
    name = settings.candidate or f"{Path(folder).resolve().parent.name}:{Path(folder).name}"
    return Candidate(name, onnx, spec)


def boxes_of_frame(frame: FrameDetections) -> list[LabelledBox]:
    return [LabelledBox(d.class_name, d.box.x1, d.box.y1, d.box.x2, d.box.y2) for d in frame.detections]


def boxes_of_detections(found: ObjectDetections) -> list[LabelledBox]:
    return [
        LabelledBox(class_name(int(c)), *(float(v) for v in box))
        for box, c in zip(found.boxes, found.class_ids, strict=True)
    ]


class CandidateRunner:
    """The candidate's ONNX in an ONNX Runtime session, called from one thread."""

    def __init__(self, candidate: Candidate, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.candidate = candidate
        self.session = ort.InferenceSession(str(candidate.onnx), options, providers=["CPUExecutionProvider"])
        self.names = list(candidate.spec.output_names)

    def detect(self, jpeg: bytes, thresholds: Thresholds) -> ObjectDetections | DecodeError:
        def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
            outputs = self.session.run(self.names, {self.candidate.spec.input_name: batch})
            return dict(zip(self.names, outputs, strict=True))

        [found] = detect_batch([jpeg], infer, [thresholds], spec=self.candidate.spec, max_batch=1)
        return found


class ShadowStage:
    def __init__(
        self,
        context: WorkerContext,
        settings: ShadowSettings,
        runner: CandidateRunner,
        fetcher: KafkaFrameFetcher,
        agreements: faust.TopicT,
        deadletter: faust.TopicT,
    ) -> None:
        self.context = context
        self.settings = settings
        self.runner = runner
        self.fetcher = fetcher
        self.agreements = agreements
        self.dead_letters = DeadLetterRule(deadletter, STAGE, context.metrics)
        self.metrics = context.metrics
        self.retry = context.retry
        triton = context.settings.triton
        self.thresholds = Thresholds(triton.score_threshold, triton.iou_threshold)
        self.stop = threading.Event()
        # The frame read and the candidate's inference block: one thread, off the event loop.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")

    async def process(self, event: EventT) -> None:
        await process_one(event, self._handle, step="shadow", dead_letters=self.dead_letters, retry=self.retry)

    async def _handle(self, event: EventT) -> list[Outgoing] | Rejection:
        frame = parse_frame_detections(event)  # any key: this stage keeps no per-camera state
        if isinstance(frame, Rejection):
            return frame
        if frame.frame_seq % self.settings.sample_every:
            return []
        loop = asyncio.get_running_loop()
        compared = await loop.run_in_executor(self.executor, partial(self._compare, frame))
        if compared is None:
            return []
        return [Outgoing(self.agreements, frame.camera_id.encode(), compared.model_dump_json().encode())]

    def _compare(self, frame: FrameDetections) -> ModelAgreement | None:
        """On the executor thread: the frame's JPEG, the candidate's detections, their agreement."""
        jpeg = self._fetch(frame)
        if jpeg is None:
            return None
        started = time.perf_counter()
        found = self.runner.detect(jpeg, self.thresholds)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if isinstance(found, DecodeError):  # it decoded for the served model: not expected
            log.warning("shadow: frame does not decode", extra={"event_id": frame.event_id, "reason": str(found)})
            return None
        current, candidate = boxes_of_frame(frame), boxes_of_detections(found)
        result = agreement(current, candidate, self.settings.iou_threshold)
        return ModelAgreement(
            agreement_id=f"{frame.event_id}:{self.runner.candidate.name}",
            event_id=frame.event_id,
            camera_id=frame.camera_id,
            frame_seq=frame.frame_seq,
            captured_at=frame.captured_at,
            current_model=f"{frame.model_name}:{frame.model_version}",
            candidate=self.runner.candidate.name,
            current_objects=len(current),
            candidate_objects=len(candidate),
            matched=result.matched,
            precision=result.precision,
            recall=result.recall,
            mean_iou=min(1.0, result.mean_iou),
            iou_threshold=self.settings.iou_threshold,
            candidate_ms=elapsed_ms,
            compared_at=utc_now(),
        )

    def _fetch(self, frame: FrameDetections) -> bytes | None:
        if frame.frame_partition is None or frame.frame_offset is None:
            return None
        image = retry_sync(
            partial(self.fetcher.fetch, frame.frame_partition, frame.frame_offset, frame.event_id),
            policy=self.retry,
            transient=lambda error: isinstance(error, FrameFetchError),
            what="reading a shadowed frame",
            log=log,
            stop=self.stop,
        )
        if image is None:
            log.info("shadow: frame gone from the frames topic; not compared", extra={"event_id": frame.event_id})
        return image

    def close(self) -> None:
        self.stop.set()
        self.executor.submit(self.fetcher.close).result()
        self.executor.shutdown(wait=True)


def register(app: faust.App, context: WorkerContext, settings: ShadowSettings | None = None) -> ShadowStage:
    """Settings and the candidate are loaded here: a bad folder stops the worker before it consumes."""
    settings = settings or ShadowSettings()
    candidate = load_candidate(settings)
    log.info("shadowing a candidate", extra={"candidate": candidate.name, "decoder": candidate.spec.decoder})
    topics = context.topics
    fetcher = KafkaFrameFetcher(context.settings.kafka, topics.frames, settings.fetch_timeout_s)
    stage = ShadowStage(
        context,
        settings,
        CandidateRunner(candidate, settings.threads),
        fetcher,
        raw_topic(app, topics.model_agreement),
        raw_topic(app, topics.deadletter),
    )
    context.closers.append(stage.close)

    @app.agent(raw_topic(app, topics.detections), name=STAGE)
    async def shadow(stream: faust.StreamT) -> None:
        async for event in stream.events():
            hold([event])  # first, before any await: see streams/delivery.py
            await stage.process(event)
            await release(stream, [event])

    return stage
