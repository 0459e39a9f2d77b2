"""Builders of valid test messages. Every argument has a default; pass only what a test is about.

Times default to ``BASE_TIME`` plus a tenth of a second per frame (a 10 fps camera), so frames
built with increasing ``frame_seq`` are in capture order. Extra keyword arguments go straight to
the model, so a test can set any other field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import Alert, BoundingBox, DeadLetter, Detection, FrameDetections, FrameMeta, ImageStats
from schemas.alerts import Severity
from schemas.camera_health import CameraHealth, CameraState, HealthTrigger
from schemas.coco import COCO_CLASSES
from schemas.model_alerts import ModelAlert, model_alert_id_for
from schemas.reviews import AlertReview, review_id_for

BASE_TIME = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
FRAME_INTERVAL = timedelta(seconds=0.1)

Box = tuple[float, float, float, float]


def capture_time(frame_seq: int) -> datetime:
    """Default ``captured_at`` of frame ``frame_seq``."""
    return BASE_TIME + frame_seq * FRAME_INTERVAL


def make_box(x1: float = 100.0, y1: float = 100.0, x2: float = 200.0, y2: float = 300.0) -> BoundingBox:
    return BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)


def make_detection(
    class_name: str = "person",
    score: float = 0.9,
    box: Box | BoundingBox = (100.0, 100.0, 200.0, 300.0),
    *,
    detection_id: str = "cam-1:0:0",
    **overrides: Any,
) -> Detection:
    """A detection; ``class_id`` follows from ``class_name``. Inside ``make_frame_detections`` ids are renumbered."""
    fields: dict[str, Any] = {
        "detection_id": detection_id,
        "class_id": COCO_CLASSES.index(class_name) if class_name in COCO_CLASSES else 0,
        "class_name": class_name,
        "score": score,
        "box": box if isinstance(box, BoundingBox) else make_box(*box),
    }
    return Detection(**(fields | overrides))


def make_frame_detections(
    camera_id: str = "cam-1",
    frame_seq: int = 0,
    detections: Sequence[Detection] = (),
    *,
    captured_at: datetime | None = None,
    width: int = 640,
    height: int = 480,
    **overrides: Any,
) -> FrameDetections:
    """Per-frame detections; detection ids become '<camera_id>:<frame_seq>:<index>' as the detect stage writes them."""
    captured = captured_at or capture_time(frame_seq)
    numbered = tuple(
        detection.model_copy(update={"detection_id": f"{camera_id}:{frame_seq}:{index}"})
        for index, detection in enumerate(detections)
    )
    fields: dict[str, Any] = {
        "event_id": f"{camera_id}:{frame_seq}",
        "camera_id": camera_id,
        "frame_seq": frame_seq,
        "captured_at": captured,
        "detected_at": captured + timedelta(milliseconds=40),
        "width": width,
        "height": height,
        "model_name": "detector",
        "model_version": "1",
        "detections": numbered,
    }
    return FrameDetections(**(fields | overrides))


def make_frame_meta(
    camera_id: str = "cam-1",
    frame_seq: int = 0,
    *,
    captured_at: datetime | None = None,
    width: int = 640,
    height: int = 480,
    stats: ImageStats | None = None,
    **overrides: Any,
) -> FrameMeta:
    fields: dict[str, Any] = {
        "camera_id": camera_id,
        "frame_seq": frame_seq,
        "captured_at": captured_at or capture_time(frame_seq),
        "width": width,
        "height": height,
        "stats": stats,
    }
    return FrameMeta(**(fields | overrides))


def make_alert(
    rule_id: str = "person-detected",
    camera_id: str = "cam-1",
    frame_seq: int = 0,
    *,
    captured_at: datetime | None = None,
    raised_at: datetime | None = None,
    class_name: str = "person",
    score: float = 0.9,
    severity: Severity = Severity.WARNING,
    **overrides: Any,
) -> Alert:
    captured = captured_at or capture_time(frame_seq)
    fields: dict[str, Any] = {
        "alert_id": f"{rule_id}:{camera_id}:{frame_seq}",
        "rule_id": rule_id,
        "severity": severity,
        "camera_id": camera_id,
        "frame_seq": frame_seq,
        "event_id": f"{camera_id}:{frame_seq}",
        "captured_at": captured,
        "raised_at": raised_at or captured + timedelta(milliseconds=100),
        "class_name": class_name,
        "score": score,
        "box": make_box(),
        "message": f"{class_name} detected",
    }
    return Alert(**(fields | overrides))


def make_dead_letter(
    stage: str = "detect",
    original: bytes = b"not a jpeg",
    *,
    reason: str = "cannot decode image",
    error_type: str = "ValueError",
    source_topic: str = "vision.frames.v1",
    failed_at: datetime | None = None,
    **overrides: Any,
) -> DeadLetter:
    fields: dict[str, Any] = {
        "stage": stage,
        "reason": reason,
        "error_type": error_type,
        "source_topic": source_topic,
        "source_partition": 0,
        "source_offset": 0,
        "original": original,
        "failed_at": failed_at or BASE_TIME,
    }
    return DeadLetter(**(fields | overrides))


def make_alert_review(
    alert: Alert | None = None,
    verdict: str = "true_positive",
    reviewer: str = "ana",
    *,
    reviewed_at: datetime | None = None,
    **overrides: Any,
) -> AlertReview:
    reviewed = alert or make_alert()
    fields: dict[str, Any] = {
        "review_id": review_id_for(reviewed.alert_id, reviewer),
        "alert_id": reviewed.alert_id,
        "camera_id": reviewed.camera_id,
        "rule_id": reviewed.rule_id,
        "event_id": reviewed.event_id,
        "verdict": verdict,
        "reviewer": reviewer,
        "reviewed_at": reviewed_at or reviewed.raised_at + timedelta(minutes=5),
    }
    return AlertReview(**(fields | overrides))


def make_model_alert(
    camera_id: str = "cam-1",
    statistic: str = "brightness",
    frame_seq: int = 600,
    *,
    state: str = "started",
    captured_at: datetime | None = None,
    **overrides: Any,
) -> ModelAlert:
    """A drift event: reference frames 0-299, current window the 300 frames up to ``frame_seq``."""
    captured = captured_at or capture_time(frame_seq)
    fields: dict[str, Any] = {
        "model_alert_id": model_alert_id_for(camera_id, statistic, frame_seq),
        "state": state,
        "camera_id": camera_id,
        "statistic": statistic,
        "test": "ks",
        "test_statistic": 0.42,
        "p_value": 1e-9,
        "effect_size": 0.8,
        "reference_value": 120.0,
        "current_value": 60.0,
        "reference_frames": 300,
        "window_frames": 300,
        "reference_samples": 300,
        "window_samples": 300,
        "reference_first_seq": 0,
        "reference_last_seq": 299,
        "reference_from": captured - timedelta(seconds=frame_seq * 0.5),
        "reference_to": captured - timedelta(seconds=(frame_seq - 299) * 0.5),
        "window_first_seq": frame_seq - 299,
        "frame_seq": frame_seq,
        "window_from": captured - timedelta(seconds=299 * 0.5),
        "captured_at": captured,
        "model_name": "detector",
        "model_version": "1",
        "raised_at": captured + timedelta(milliseconds=200),
        "message": f"{camera_id}: {statistic} drift {state}",
    }
    return ModelAlert(**(fields | overrides))


def make_camera_health(
    camera_id: str = "cam-1",
    report_seq: int = 0,
    *,
    reported_at: datetime | None = None,
    state: CameraState = CameraState.ONLINE,
    run_id: str = "run-1",
    **overrides: Any,
) -> CameraHealth:
    """A periodic report of a healthy 10 fps camera (an offline one gets ``offline_since``/``outage_s``)."""
    reported = reported_at or BASE_TIME + timedelta(seconds=10 * report_seq)
    offline = state is CameraState.OFFLINE
    fields: dict[str, Any] = {
        "health_id": f"{camera_id}:{run_id}:{report_seq}",
        "camera_id": camera_id,
        "run_id": run_id,
        "report_seq": report_seq,
        "reported_at": reported,
        "trigger": HealthTrigger.PERIODIC,
        "state": state,
        "target_fps": 10.0,
        "achieved_fps": 0.0 if offline else 9.8,
        "window_s": 10.0,
        "frames": 0 if offline else 98,
        "decode_errors": 0,
        "reconnects": 2 if offline else 0,
        "frames_total": 98 * (report_seq + 1),
        "decode_errors_total": 0,
        "reconnects_total": 2 if offline else 0,
        "frame_age_ms_p50": None if offline else 12.0,
        "frame_age_ms_max": None if offline else 40.0,
        "last_frame_at": reported - timedelta(seconds=5 if offline else 0.1),
        "offline_since": reported - timedelta(seconds=5) if offline else None,
        "outage_s": 5.0 if offline else None,
    }
    return CameraHealth(**(fields | overrides))
