"""Camera health, the message on ``vision.camera-health.v1``: one per camera every few seconds
and on every change of state, produced by ingest."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime


class CameraState(str, Enum):
    ONLINE = "online"  # frames arrive
    OFFLINE = "offline"  # the stream is lost, or no frame for longer than the camera's offline threshold


class HealthTrigger(str, Enum):
    PERIODIC = "periodic"  # the reporting interval came round
    STATE_CHANGE = "state_change"  # online -> offline or back
    FINAL = "final"  # ingest stopped the camera


class CameraHealth(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    health_id: str = Field(description="deterministic: '<camera_id>:<run_id>:<report_seq>'")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    run_id: str = Field(description="the ingest run that reported it (a restart starts a new run)")
    report_seq: int = Field(ge=0, description="per camera and run, from 0")
    reported_at: UtcDatetime
    trigger: HealthTrigger
    state: CameraState
    target_fps: float = Field(gt=0)
    achieved_fps: float = Field(ge=0, description="frames produced per second over the last window_s")
    window_s: float = Field(gt=0, description="length of the window achieved_fps and frame ages are taken over")
    frames: int = Field(ge=0, description="frames produced since the previous report")
    decode_errors: int = Field(
        ge=0, description="frames or images that could not be decoded, since the previous report"
    )
    reconnects: int = Field(ge=0, description="reconnect attempts of the stream since the previous report")
    frames_total: int = Field(ge=0)
    decode_errors_total: int = Field(ge=0)
    reconnects_total: int = Field(ge=0)
    frame_age_ms_p50: float | None = Field(
        None, ge=0, description="median of (produce time - capture time) in the window; None without frames"
    )
    frame_age_ms_max: float | None = Field(None, ge=0)
    last_frame_at: UtcDatetime | None = Field(None, description="capture time of the last frame produced")
    offline_since: UtcDatetime | None = Field(None, description="when the camera went offline (state offline only)")
    outage_s: float | None = Field(
        None,
        ge=0,
        description="offline: how long so far; the first report online after an outage: how long it lasted",
    )
