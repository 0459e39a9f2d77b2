"""Frames worth labelling, the message on ``vision.hard-examples.v1`` (produced by the monitor stage).

One message per frame and reason, so each reason is counted and rate-limited on its own; the
frame's image and predictions are stored once (``image_uri``, ``predictions_uri``) whatever the
number of reasons. ``image_uri`` is None when the frame had already left the frames topic
(retention) by the time it was sampled: the example is recorded all the same, without an image.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime
from schemas.detections import Detection


class HardExampleReason(str, Enum):
    UNCERTAIN = "uncertain"  # a detection scored within a band around the serving threshold
    CONFUSED = "confused"  # overlapping boxes of different classes: the model could not decide
    RARE_CLASS = "rare_class"  # a class seldom seen in this camera's recent detections
    DRIFTING_CAMERA = "drifting_camera"  # the monitor says the camera's input drifts
    REVIEWED_FALSE = "reviewed_false"  # an alert on this frame was reviewed as a false positive


class HardExample(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    example_id: str = Field(description="deterministic: '<camera_id>:<frame_seq>:<reason>'")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    frame_seq: int = Field(ge=0)
    event_id: str = Field(description="the frame: '<camera_id>:<frame_seq>'")
    reason: HardExampleReason
    detail: str = Field("", description="what made the frame hard, e.g. 'dog 0.38 near threshold 0.35'")
    captured_at: UtcDatetime
    sampled_at: UtcDatetime
    image_uri: str | None = Field(description="the stored JPEG (file:// or s3://); None: the frame was gone")
    predictions_uri: str = Field(description="the stored FrameDetections JSON")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    model_name: str
    model_version: str
    predictions: tuple[Detection, ...] = ()
    review_id: str | None = Field(None, description="the review that flagged the frame (reviewed_false)")


def example_id(event_id: str, reason: HardExampleReason) -> str:
    return f"{event_id}:{reason.value}"
