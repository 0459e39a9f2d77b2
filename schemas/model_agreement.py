"""Shadow mode, the message on ``vision.model-agreement.v1``: on one sampled frame, how far a
candidate detector (run beside the served one, never answering the stream) agrees with it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime


class ModelAgreement(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    agreement_id: str = Field(description="deterministic: '<event_id>:<candidate>'")
    event_id: str = Field(description="the frame: '<camera_id>:<frame_seq>'")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    frame_seq: int = Field(ge=0)
    captured_at: UtcDatetime
    current_model: str = Field(description="'<name>:<version>' that served the frame")
    candidate: str = Field(description="the shadowed candidate, e.g. 'detector:2'")
    current_objects: int = Field(ge=0)
    candidate_objects: int = Field(ge=0)
    matched: int = Field(ge=0, description="pairs of the same class with IoU >= iou_threshold")
    precision: float = Field(ge=0.0, le=1.0, description="matched / candidate objects (1.0 when both are empty)")
    recall: float = Field(ge=0.0, le=1.0, description="matched / current objects (1.0 when both are empty)")
    mean_iou: float = Field(ge=0.0, le=1.0, description="over matched pairs")
    iou_threshold: float = Field(gt=0.0, le=1.0)
    candidate_ms: float = Field(ge=0.0, description="the candidate's inference time on this frame, in process")
    compared_at: UtcDatetime
