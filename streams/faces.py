"""Faces: the async gRPC client of the served ``face_detector`` (encoded image in, face boxes
out), and the privacy rule that decides what gets its faces blurred before it is stored.

Usage:
    client = FaceDetectorClient(triton_url)
    faces = await client.detect(jpeg)        # processors.faces.FaceDetections, original pixels

Errors are the detector client's two kinds (``streams.inference``): ``InferenceRejected``
(the image itself is bad; permanent) and ``InferenceUnavailable`` (retry, never skip).
"""

from __future__ import annotations

from typing import Annotated, Literal

import cv2
import numpy as np
import tritonclient.grpc.aio as grpcclient
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from tritonclient.utils import InferenceServerException

from processors.decode import decode_for_size
from processors.faces import DEFAULT_SCORE_THRESHOLD, FaceDetections, blur_faces, unpad_faces
from streams.inference import InferenceUnavailable, TritonModelClient, classify, retry_transient
from streams.retry import RetryPolicy

FACE_MODEL = "face_detector"
OUTPUT_NAMES = ("NUM_FACES", "BOXES", "SCORES")


class FaceDetectorClient(TritonModelClient):
    """The served ``face_detector``: one request per image (Triton batches concurrent ones)."""

    DEFAULT_MODEL = FACE_MODEL

    async def detect(self, image: bytes, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> FaceDetections:
        """The faces in one encoded image (one request; Triton batches concurrent ones)."""
        rows = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        rows.set_data_from_numpy(np.array([[bytes(image)]], dtype=np.object_))
        outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        try:
            result = await self._grpc().infer(
                self.model_name,
                [rows],
                outputs=outputs,
                parameters={"score_threshold": float(score_threshold)},
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as error:
            raise classify(error) from error
        except (TimeoutError, OSError) as error:
            raise InferenceUnavailable(f"{type(error).__name__}: {error}") from error
        num, boxes, scores = (result.as_numpy(name) for name in OUTPUT_NAMES)
        return unpad_faces(int(num[0, 0]), boxes[0], scores[0])


Exported = Literal["snapshot", "hard_example", "annotated"]


class PrivacySettings(BaseSettings):
    """Face blurring of what is stored or exported (env ``FRAMESTREAM_PRIVACY_*``; lists comma-separated).

    Snapshots are blurred unless the camera is in ``unblurred_cameras``; hard examples and
    annotated frames only for the cameras in ``blur_cameras`` (or all, with ``blur_everything``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_PRIVACY_", extra="forbid")

    blur_snapshots: bool = Field(True, description="blur faces in alert snapshots (default on)")
    unblurred_cameras: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="cameras whose snapshots are not blurred (e.g. a loading bay with no public)"
    )
    blur_everything: bool = Field(False, description="also blur hard examples and annotated frames of every camera")
    blur_cameras: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="cameras whose hard examples and annotated frames are blurred too"
    )

    @field_validator("unblurred_cameras", "blur_cameras", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    def blurs(self, camera_id: str, what: Exported) -> bool:
        """Whether faces of ``camera_id`` are blurred in ``what`` before it is stored."""
        if what == "snapshot":
            return self.blur_snapshots and camera_id not in self.unblurred_cameras
        return self.blur_everything or camera_id in self.blur_cameras


class FaceBlurrer:
    """Blurs faces out of frames before they are stored or exported, as ``PrivacySettings`` decide per camera.

    Usage (e.g. hard-example capture, before ``store.put``):
        blurrer = FaceBlurrer(FaceDetectorClient(triton_url), PrivacySettings(), retry=context.retry)
        jpeg = await blurrer.blur_jpeg(camera_id, jpeg, "hard_example")   # unchanged where not wanted
    Unavailable Triton is retried with ``retry``; an image Triton refuses raises ``InferenceRejected``."""

    def __init__(
        self,
        faces: FaceDetectorClient,
        privacy: PrivacySettings,
        *,
        retry: RetryPolicy,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        quality: int = 90,
    ) -> None:
        self.faces = faces
        self.privacy = privacy
        self.retry = retry
        self.score_threshold = score_threshold
        self.quality = quality

    async def face_boxes(self, jpeg: bytes) -> np.ndarray:
        """[K,4] face boxes in the image's pixels (Triton, retried while unavailable)."""
        found = await retry_transient(
            lambda: self.faces.detect(jpeg, self.score_threshold), what="face detection", retry=self.retry
        )
        return found.boxes

    async def blur_jpeg(self, camera_id: str, jpeg: bytes, what: Exported) -> bytes:
        """``jpeg`` with its faces blurred if ``what`` of ``camera_id`` is to be blurred; else as is."""
        if not self.privacy.blurs(camera_id, what):
            return jpeg
        boxes = await self.face_boxes(jpeg)
        if not len(boxes):
            return jpeg
        image = blur_faces(decode_for_size(jpeg, None).pixels, boxes)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("OpenCV could not encode the blurred frame")
        return encoded.tobytes()
