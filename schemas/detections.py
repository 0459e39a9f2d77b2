"""Per-frame detections, the message on ``vision.detections.v1``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime
from schemas.frames import ImageStats


class BoundingBox(Message):
    """Axis-aligned box in original-image pixel coordinates."""

    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="after")
    def _ordered(self) -> "BoundingBox":
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError("box corners must satisfy x1 <= x2 and y1 <= y2")
        return self

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)


class Detection(Message):
    detection_id: str = Field(description="deterministic: '<camera_id>:<frame_seq>:<index>'")
    class_id: int = Field(ge=0)
    class_name: str
    score: float = Field(ge=0.0, le=1.0)
    box: BoundingBox


class StageTimings(Message):
    """Milliseconds spent per stage, for latency panels. Absent stages are None."""

    ingest_ms: float | None = Field(None, ge=0, description="capture to produce (encode included)")
    queue_ms: float | None = Field(None, ge=0, description="produce to detect-stage pickup")
    batch_wait_ms: float | None = Field(None, ge=0, description="time the frame waited for its micro-batch")
    triton_ms: float | None = Field(None, ge=0, description="round trip of the Triton request")


class FrameClassification(Message):
    """The image classifier's verdict on the whole frame (cameras with a classifier only)."""

    label: str = Field(min_length=1, description="the most probable class, e.g. 'defect'")
    class_id: int = Field(ge=0, description="its index in the classifier's labels")
    score: float = Field(ge=0.0, le=1.0, description="its probability")
    model_name: str = Field(description="the served classifier, e.g. 'defects'")
    model_version: str = Field(description="the version that answered, from Triton's response")


class FrameDetections(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="deterministic frame id: '<camera_id>:<frame_seq>'")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    frame_seq: int = Field(ge=0)
    captured_at: UtcDatetime
    detected_at: UtcDatetime
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    model_name: str
    model_version: str
    detections: tuple[Detection, ...] = ()
    stats: ImageStats | None = None
    timings: StageTimings = StageTimings()
    frame_partition: int | None = Field(None, ge=0, description="where the frame lies on vision.frames.v1")
    frame_offset: int | None = Field(None, ge=0, description="the frame record's offset in that partition")
    classification: FrameClassification | None = Field(
        None, description="the camera's classifier's verdict; absent for cameras without one (added in v1, optional)"
    )
