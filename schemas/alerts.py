"""Alerts, the message on ``vision.alerts.v1`` that downstream systems consume."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime
from schemas.detections import BoundingBox


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    alert_id: str = Field(description="deterministic: '<rule_id>:<camera_id>:<frame_seq>'; a replay yields the same id")
    rule_id: str
    severity: Severity
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    frame_seq: int = Field(ge=0)
    event_id: str = Field(description="the frame's event id in vision.detections.v1")
    captured_at: UtcDatetime
    raised_at: UtcDatetime
    class_name: str
    score: float = Field(ge=0.0, le=1.0)
    box: BoundingBox
    zone: str | None = None
    object_count: int = Field(1, ge=1, description="matching objects in the frame")
    message: str
    snapshot_url: str | None = Field(
        None,
        pattern=r"^(file|s3|https?)://",
        description="the annotated JPEG (boxes and zone drawn, faces blurred unless the camera opted out): "
        "file://, s3:// or http(s)://; absent when the frame could not be read back (added in v1, optional)",
    )
