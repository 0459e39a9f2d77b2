"""Alert reviews, the message on ``vision.alert-reviews.v1``: a person's (or a system's) verdict on an alert.

Published by ``framestream review`` or by any downstream system; the persist stage stores them
and the Alerts dashboard computes precision per rule and camera from them. Replays and
re-submissions keep the same ``review_id``, so the latest verdict of a reviewer wins.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime

Verdict = Literal["true_positive", "false_positive"]


def review_id_for(alert_id: str, reviewer: str) -> str:
    """The deterministic review id: one review per alert and reviewer (a later one replaces it)."""
    return f"{alert_id}:{reviewer}"


class AlertReview(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    review_id: str = Field(description="deterministic: '<alert_id>:<reviewer>'")
    alert_id: str = Field(min_length=1, description="the reviewed alert's alert_id (vision.alerts.v1)")
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN, description="copied from the alert")
    rule_id: str = Field(min_length=1, description="copied from the alert")
    event_id: str = Field(min_length=1, description="copied from the alert: the frame id '<camera_id>:<frame_seq>'")
    verdict: Verdict
    corrected_class: str | None = Field(
        None, min_length=1, description="the right class name when the model named the object wrongly"
    )
    reviewer: str = Field(min_length=1, max_length=128)
    reviewed_at: UtcDatetime
    note: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _deterministic_id(self) -> "AlertReview":
        expected = review_id_for(self.alert_id, self.reviewer)
        if self.review_id != expected:
            raise ValueError(f"review_id must be '<alert_id>:<reviewer>' = {expected!r}, got {self.review_id!r}")
        return self
