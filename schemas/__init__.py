"""Message models for every topic. JSON Schema files in ``schemas/json`` are generated from them."""

from schemas.alerts import Alert
from schemas.base import SCHEMA_VERSION, Message
from schemas.camera_health import CameraHealth, CameraState, HealthTrigger
from schemas.deadletter import DeadLetter
from schemas.detections import BoundingBox, Detection, FrameClassification, FrameDetections, StageTimings
from schemas.frames import FrameMeta, ImageStats
from schemas.hard_examples import HardExample, HardExampleReason
from schemas.model_agreement import ModelAgreement
from schemas.model_alerts import ModelAlert
from schemas.reviews import AlertReview
from schemas.tracks import FrameTracks

__all__ = [
    "SCHEMA_VERSION",
    "Alert",
    "AlertReview",
    "BoundingBox",
    "CameraHealth",
    "CameraState",
    "DeadLetter",
    "Detection",
    "FrameClassification",
    "FrameDetections",
    "FrameMeta",
    "FrameTracks",
    "HardExample",
    "HardExampleReason",
    "HealthTrigger",
    "ImageStats",
    "Message",
    "ModelAgreement",
    "ModelAlert",
    "StageTimings",
]
