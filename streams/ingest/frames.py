"""From a captured frame to the bytes and headers of a record, and dead letters for bad files.

Pure apart from OpenCV's encoder: no Kafka here, so it is unit-tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from processors.image_stats import image_stats
from schemas import DeadLetter, FrameMeta, ImageStats
from schemas.base import utc_now
from streams.ingest.cameras import Camera
from streams.ingest.sources import CapturedFrame

# Dead letters carry the original bytes base64-encoded in JSON (x4/3); past this
# size the record would exceed the usual 1 MB broker limit, so the bytes are left out.
MAX_DEAD_LETTER_ORIGINAL = 700_000


class IngestError(RuntimeError):
    """A camera or the producer cannot go on; the message says why."""


@dataclass
class EncodedFrame:
    jpeg: bytes
    meta: FrameMeta


def encode_frame(camera: Camera, captured: CapturedFrame, frame_seq: int) -> EncodedFrame:
    """Resize (if configured), JPEG-encode and describe one frame."""
    image = captured.image
    if camera.resize_width is not None and image.shape[1] > camera.resize_width:
        height = max(1, round(image.shape[0] * camera.resize_width / image.shape[1]))
        image = cv2.resize(image, (camera.resize_width, height), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, camera.jpeg_quality])
    if not ok:
        raise IngestError(f"camera {camera.id}: JPEG encoding failed for a {image.shape} frame")
    stats = image_stats(image)
    meta = FrameMeta(
        camera_id=camera.id,
        frame_seq=frame_seq,
        captured_at=captured.captured_at,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        stats=ImageStats(brightness=stats.brightness, sharpness=stats.sharpness, contrast=stats.contrast),
        detector=camera.detector,
        classifier=camera.classifier,
    )
    return EncodedFrame(jpeg=np.asarray(buffer).tobytes(), meta=meta)


def dead_letter_for_file(camera_id: str, frames_topic: str, path: Path, raw: bytes, reason: str) -> DeadLetter:
    """A dead letter for an image file that could not be decoded."""
    headers = {"fs-camera-id": camera_id, "source-path": str(path)}
    return _ingest_dead_letter(camera_id, frames_topic, raw, headers, reason, "UndecodableImage")


def dead_letter_for_frame(
    camera_id: str, frames_topic: str, jpeg: bytes, headers: list[tuple[str, bytes]], reason: str, *, too_large: bool
) -> DeadLetter:
    """A dead letter for an encoded frame the broker refused for good. When its size is the
    problem the bytes are left out (they would be refused again); the headers identify the frame."""
    kept = {name: value.decode("utf-8", errors="backslashreplace") for name, value in headers}
    return _ingest_dead_letter(camera_id, frames_topic, jpeg, kept, reason, "UndeliverableFrame", omit=too_large)


def _ingest_dead_letter(
    camera_id: str,
    frames_topic: str,
    original: bytes,
    headers: dict[str, str],
    reason: str,
    error_type: str,
    *,
    omit: bool = False,
) -> DeadLetter:
    """Originals above MAX_DEAD_LETTER_ORIGINAL (or ``omit``) are left out, and the reason says so."""
    headers = {**headers, "original-size": str(len(original))}
    if omit or len(original) > MAX_DEAD_LETTER_ORIGINAL:
        limit = "" if omit else f" exceed {MAX_DEAD_LETTER_ORIGINAL}"
        reason = f"{reason}; original bytes left out ({len(original)} bytes{limit})"
        original = b""
    return DeadLetter(
        stage="ingest",
        reason=reason,
        error_type=error_type,
        source_topic=frames_topic,
        key=camera_id.encode(),
        headers=headers,
        original=original,
        failed_at=utc_now(),
    )
