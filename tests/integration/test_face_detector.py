"""The served ``face_detector`` on a real tritonserver: the same faces as the model file run in-process,
concurrent requests batched, bad input refused for good, and its speed (printed with -s)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from processors.faces import FaceDetections, detect_faces_batch
from streams.faces import FaceDetectorClient
from streams.inference import InferenceRejected
from tests.unit.test_faces import ASTRONAUT_FACE, PHOTOS, Session, iou

pytestmark = pytest.mark.integration


def test_served_faces_match_the_in_process_model(triton_url: str) -> None:
    astronaut = (PHOTOS / "astronaut.jpg").read_bytes()
    [expected] = detect_faces_batch([astronaut], Session())
    assert isinstance(expected, FaceDetections)

    async def scenario() -> tuple[FaceDetections, list[FaceDetections], float]:
        client = FaceDetectorClient(triton_url)
        try:
            one = await client.detect(astronaut)
            started = time.perf_counter()
            many = await asyncio.gather(*(client.detect(astronaut) for _ in range(8)))
            return one, list(many), (time.perf_counter() - started) / 8
        finally:
            await client.close()

    served, concurrent, per_image_s = asyncio.run(scenario())
    assert len(served) == 1 and iou(served.boxes[0], ASTRONAUT_FACE) > 0.7
    np.testing.assert_allclose(served.boxes, expected.boxes, atol=0.5)
    for faces in concurrent:
        np.testing.assert_allclose(faces.boxes, served.boxes, atol=0.5)
    print(f"face_detector: {per_image_s * 1000:.1f} ms per 512x512 image, 8 concurrent requests")


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0 truncated", b"GIF89a not ours"])
def test_bad_images_are_refused_for_good(triton_url: str, data: bytes) -> None:
    async def scenario() -> None:
        client = FaceDetectorClient(triton_url)
        try:
            await client.detect(data)
        finally:
            await client.close()

    with pytest.raises(InferenceRejected):
        asyncio.run(scenario())
