"""``ModelAlert``, ``AlertReview`` (migration 0003) and ``ModelAgreement`` (0009) to ClickHouse rows: pure, no I/O.

Kept beside ``rows.py``, which declares the tables and routes these messages here. A model
alert's row id is its deterministic ``model_alert_id``. A review's is ``review_version``
(its ``review_id`` at its ``reviewed_at``): a replayed review is skipped by the sink, while a
reviewer's changed verdict (same ``review_id``, later ``reviewed_at``) is stored beside the old
one; readers take the latest per ``review_id`` (``argMax(verdict, reviewed_at)``).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from schemas.model_agreement import ModelAgreement
from schemas.model_alerts import ModelAlert
from schemas.reviews import AlertReview


class ModelAlertRow(NamedTuple):
    model_alert_id: str
    kind: str
    state: str
    camera_id: str
    statistic: str
    test: str
    test_statistic: float
    p_value: float
    effect_size: float
    reference_value: float
    current_value: float
    category: str | None
    reference_frames: int
    window_frames: int
    reference_samples: int
    window_samples: int
    reference_first_seq: int
    reference_last_seq: int
    reference_from: datetime
    reference_to: datetime
    window_first_seq: int
    frame_seq: int
    window_from: datetime
    captured_at: datetime
    model_name: str
    model_version: str
    raised_at: datetime
    message: str


class AlertReviewRow(NamedTuple):
    review_version: str
    review_id: str
    alert_id: str
    camera_id: str
    rule_id: str
    event_id: str
    verdict: str
    corrected_class: str | None
    reviewer: str
    reviewed_at: datetime
    note: str | None


def review_version(review: AlertReview) -> str:
    """A review at one point in time: replays share it, a changed verdict does not."""
    return f"{review.review_id}@{int(review.reviewed_at.timestamp() * 1000)}"


def model_alert_row(alert: ModelAlert) -> ModelAlertRow:
    return ModelAlertRow(**alert.model_dump(exclude={"schema_version"}))


def alert_review_row(review: AlertReview) -> AlertReviewRow:
    return AlertReviewRow(review_version=review_version(review), **review.model_dump(exclude={"schema_version"}))


class ModelAgreementRow(NamedTuple):
    agreement_id: str
    event_id: str
    camera_id: str
    frame_seq: int
    captured_at: datetime
    current_model: str
    candidate: str
    current_objects: int
    candidate_objects: int
    matched: int
    precision: float
    recall: float
    mean_iou: float
    iou_threshold: float
    candidate_ms: float
    compared_at: datetime


def model_agreement_row(agreement: ModelAgreement) -> ModelAgreementRow:
    return ModelAgreementRow(**agreement.model_dump(exclude={"schema_version"}))
