"""The cameras file: which sources to ingest, at what rate and quality.

Example (``samples/cameras.yaml``)::

    cameras:
      - id: street
        source: {kind: file, path: media/street.mp4, loop: false}
        fps: 10
      - id: lobby
        source: {kind: url, url: "rtsp://10.0.0.5:554/stream1"}
        fps: 5
        resize_width: 1280

Unknown fields are errors (a typo must not silently become a default), and
relative paths resolve against the YAML file's directory.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.base import CAMERA_ID_PATTERN
from streams.config_files import ConfigFileError, load_yaml_model

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSource(_Strict):
    kind: Literal["file"]
    path: Path = Field(title="Video file", description="any container/codec OpenCV's FFmpeg backend reads")
    loop: bool = Field(False, description="start again at the end instead of finishing the camera")


class FolderSource(_Strict):
    kind: Literal["folder"]
    path: Path = Field(
        title="Image folder", description=f"images ({', '.join(sorted(IMAGE_SUFFIXES))}), read in name order"
    )
    loop: bool = Field(False, description="start again after the last image instead of finishing the camera")


class SyntheticSource(_Strict):
    kind: Literal["synthetic"]
    width: int = Field(640, ge=16, le=7680, description="frame width in pixels")
    height: int = Field(480, ge=16, le=4320, description="frame height in pixels")
    pattern: Literal["moving_boxes", "noise"] = Field("moving_boxes", description="what the frames show")
    seed: int = Field(0, ge=0, description="random seed, for reproducible frames")


class _LiveSource(_Strict):
    reconnect_initial_s: float = Field(0.5, gt=0, le=60, description="first wait after a failed open or read")
    reconnect_max_s: float = Field(30.0, gt=0, le=600, description="longest wait between reconnect attempts")
    timeout_s: float = Field(10.0, gt=0, le=300, description="open and read timeout of the stream")

    @model_validator(mode="after")
    def _backoff_ordered(self) -> _LiveSource:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class UrlSource(_LiveSource):
    kind: Literal["url"]
    url: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$",
        description="any URL OpenCV's FFmpeg backend opens: rtsp://, http(s):// MJPEG, ...",
    )


class UsbSource(_LiveSource):
    kind: Literal["usb"]
    device: int = Field(0, ge=0, le=63, description="video device index (/dev/videoN)")


# "kind" picks the model, so an error names e.g. cameras[0].source.folder.path.
Source = Annotated[FileSource | FolderSource | SyntheticSource | UrlSource | UsbSource, Field(discriminator="kind")]


class Camera(_Strict):
    id: str = Field(pattern=CAMERA_ID_PATTERN, description="Kafka key and ClickHouse key of the camera's frames")
    source: Source
    fps: float = Field(5.0, gt=0, le=120, description="target frames per second sent to Kafka")
    jpeg_quality: int = Field(85, ge=1, le=100, description="JPEG quality of the frames sent")
    max_frames: int | None = Field(None, ge=1, description="stop this camera after this many frames")
    resize_width: int | None = Field(None, ge=16, le=7680, description="downscale wider frames to this width")
    detector: bool = Field(True, description="run the object detector on this camera's frames")
    classifier: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="a served image classifier (Triton model name, e.g. defects) to run on every frame",
    )

    @model_validator(mode="after")
    def _some_model(self) -> Camera:
        if not self.detector and self.classifier is None:
            raise ValueError("a camera needs a model: keep detector true or name a classifier")
        return self


class CamerasFile(_Strict):
    cameras: list[Camera] = Field(min_length=1, description="the cameras to ingest")

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[Camera]) -> list[Camera]:
        counts = Counter(camera.id for camera in cameras)
        duplicates = sorted(camera_id for camera_id, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"camera ids must be unique; repeated: {', '.join(duplicates)}")
        return cameras


def _resolve(source: FileSource | FolderSource, base_dir: Path) -> FileSource | FolderSource:
    path = source.path.expanduser()
    return source.model_copy(update={"path": path if path.is_absolute() else (base_dir / path).resolve()})


def _path_problem(source: FileSource | FolderSource) -> str | None:
    if source.kind == "file" and not source.path.is_file():
        return f"no such video file: {source.path}"
    if source.kind == "folder" and not source.path.is_dir():
        return f"no such folder: {source.path}"
    return None


def load_cameras(path: Path) -> list[Camera]:
    """Load and validate a cameras file; raise ``ConfigFileError`` naming file, field and problem."""
    path = Path(path)
    config = load_yaml_model(path, CamerasFile)
    cameras: list[Camera] = []
    problems: list[tuple[str, str]] = []
    for index, camera in enumerate(config.cameras):
        if isinstance(camera.source, (FileSource, FolderSource)):
            source = _resolve(camera.source, path.parent)
            camera = camera.model_copy(update={"source": source})
            problem = _path_problem(source)
            if problem:
                problems.append((f"cameras[{index}].source.path", problem))
        cameras.append(camera)
    if problems:
        raise ConfigFileError(path, problems)
    return cameras
