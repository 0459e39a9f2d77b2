"""Model alerts, the message on ``vision.model-alerts.v1``: a camera's inputs or predictions drifting
away from its reference window (raised by the monitor stage, ``processors/drift.py``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime

DriftStatistic = Literal[
    "brightness",
    "contrast",
    "sharpness",
    "resolution",
    "class_mix",
    "mean_confidence",
    "detections_per_frame",
    "empty_rate",
]


def model_alert_id_for(camera_id: str, statistic: str, frame_seq: int) -> str:
    return f"drift:{camera_id}:{statistic}:{frame_seq}"


class ModelAlert(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    model_alert_id: str = Field(
        description="deterministic: 'drift:<camera_id>:<statistic>:<frame_seq>', frame_seq the window's last frame"
    )
    kind: Literal["drift"] = "drift"
    state: Literal["started", "ended"] = Field(description="drift of this statistic started, or ended, here")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    statistic: DriftStatistic
    test: Literal["ks", "chi2"] = Field(description="two-sample Kolmogorov-Smirnov, or chi-square of the 2 x k table")
    test_statistic: float = Field(ge=0.0, description="KS D, or the chi-square statistic")
    p_value: float = Field(ge=0.0, le=1.0)
    effect_size: float = Field(ge=0.0, description="population stability index (PSI) of reference vs current")
    reference_value: float = Field(description="reference window: the mean, or the share of `category`")
    current_value: float = Field(description="current window: the mean, or the share of `category`")
    category: str | None = Field(None, description="categorical statistics: the category whose share moved most")
    reference_frames: int = Field(ge=1)
    window_frames: int = Field(ge=1)
    reference_samples: int = Field(ge=0, description="values tested (frames, or detections for class mix)")
    window_samples: int = Field(ge=0)
    reference_first_seq: int = Field(ge=0)
    reference_last_seq: int = Field(ge=0)
    reference_from: UtcDatetime
    reference_to: UtcDatetime
    window_first_seq: int = Field(ge=0)
    frame_seq: int = Field(ge=0, description="the current window's last frame: the one whose arrival ran the test")
    window_from: UtcDatetime
    captured_at: UtcDatetime = Field(description="capture time of frame_seq")
    model_name: str
    model_version: str
    raised_at: UtcDatetime
    message: str

    @model_validator(mode="after")
    def _deterministic_id(self) -> "ModelAlert":
        expected = model_alert_id_for(self.camera_id, self.statistic, self.frame_seq)
        if self.model_alert_id != expected:
            raise ValueError(f"model_alert_id must be {expected!r}, got {self.model_alert_id!r}")
        return self
