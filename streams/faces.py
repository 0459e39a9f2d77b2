"""Async gRPC client of the served ``face_detector`` (encoded image in, face boxes out).

Usage:
    client = FaceDetectorClient(triton_url)
    faces = await client.detect(jpeg)        # processors.faces.FaceDetections, original pixels

Errors are the detector client's two kinds (``streams.inference``): ``InferenceRejected``
(the image itself is bad; permanent) and ``InferenceUnavailable`` (retry, never skip).
"""

from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from processors.faces import DEFAULT_SCORE_THRESHOLD, FaceDetections, unpad_faces
from streams.inference import InferenceUnavailable, channel_options, classify

FACE_MODEL = "face_detector"
OUTPUT_NAMES = ("NUM_FACES", "BOXES", "SCORES")


class FaceDetectorClient:
    """One gRPC channel to Triton, created on first use inside the running event loop."""

    def __init__(self, url: str, model_name: str = FACE_MODEL, timeout_s: float = 30.0) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._client: grpcclient.InferenceServerClient | None = None

    def _grpc(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url, channel_args=channel_options())
        return self._client

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

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
