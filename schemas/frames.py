"""Frame metadata. The frame itself travels as the record value (JPEG bytes);
this metadata travels in the record headers so consumers can route without decoding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import CAMERA_ID_PATTERN, SCHEMA_VERSION, Message, UtcDatetime

HEADER_PREFIX = "fs-"


class ImageStats(Message):
    """Cheap per-frame statistics computed at ingest, used for drift and health panels."""

    brightness: float = Field(ge=0.0, le=255.0, description="mean grey level")
    sharpness: float = Field(ge=0.0, description="variance of the Laplacian of the grey image")
    contrast: float | None = Field(
        None, ge=0.0, le=255.0, description="standard deviation of the grey levels (absent from older producers)"
    )


class FrameMeta(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    frame_seq: int = Field(ge=0, description="per-camera sequence number, monotonic within a run")
    captured_at: UtcDatetime
    width: int = Field(ge=1, le=100_000)
    height: int = Field(ge=1, le=100_000)
    content_type: Literal["image/jpeg", "image/png"] = "image/jpeg"
    stats: ImageStats | None = None
    detector: bool = Field(True, description="run the object detector on this frame (added in v1, optional)")
    classifier: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="the served image classifier to run on this frame, e.g. 'defects' (added in v1, optional)",
    )

    @property
    def frame_id(self) -> str:
        """Deterministic id of the frame: the same frame replayed gets the same id."""
        return f"{self.camera_id}:{self.frame_seq}"

    def to_headers(self) -> list[tuple[str, bytes]]:
        fields = {
            "schema-version": str(self.schema_version),
            "camera-id": self.camera_id,
            "frame-seq": str(self.frame_seq),
            "captured-at": self.captured_at.isoformat(),
            "width": str(self.width),
            "height": str(self.height),
            "content-type": self.content_type,
        }
        if not self.detector:
            fields["detector"] = "0"
        if self.classifier is not None:
            fields["classifier"] = self.classifier
        if self.stats is not None:
            fields["brightness"] = repr(self.stats.brightness)
            fields["sharpness"] = repr(self.stats.sharpness)
            if self.stats.contrast is not None:
                fields["contrast"] = repr(self.stats.contrast)
        return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes | None]] | dict[str, bytes | None] | None) -> "FrameMeta":
        """Parse record headers; raises ``pydantic.ValidationError`` or ``ValueError`` naming the field."""
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        raw = {
            name[len(HEADER_PREFIX) :]: (value or b"").decode("utf-8", errors="strict")
            for name, value in items
            if name.startswith(HEADER_PREFIX)
        }
        stats = None
        if "brightness" in raw or "sharpness" in raw:
            stats = ImageStats(
                brightness=raw.get("brightness"), sharpness=raw.get("sharpness"), contrast=raw.get("contrast")
            )
        return cls(
            schema_version=int(raw.get("schema-version", SCHEMA_VERSION)),
            camera_id=raw.get("camera-id"),
            frame_seq=raw.get("frame-seq"),
            captured_at=raw.get("captured-at"),
            width=raw.get("width"),
            height=raw.get("height"),
            content_type=raw.get("content-type", "image/jpeg"),
            stats=stats,
            detector=raw.get("detector", "1") != "0",
            classifier=raw.get("classifier"),
        )
