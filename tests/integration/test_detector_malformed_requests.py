"""Malformed requests against the real served ``detector`` (tritonserver, the Python model): a few
dozen fuzzed image rows and request parameters, each answered with detections or INVALID_ARG (a
dead letter in the pipeline), never a crash of the model or a hang; afterwards the model still
detects the same objects in a real photo. The bulk of the fuzzing runs in-process, on the same
request handling (tests/fuzz/test_fuzz_detector_requests.py); this checks the served model wires
it the same way."""

from __future__ import annotations

import asyncio
import random
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from streams.inference import DetectorClient, InferenceRejected

pytestmark = pytest.mark.integration

PHOTO = (Path(__file__).resolve().parents[2] / "tests" / "data" / "photos" / "dog.jpg").read_bytes()
SMALL_PNG = cv2.imencode(".png", np.full((20, 30, 3), 127, np.uint8))[1].tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """The small PNG with its IHDR (CRC recomputed) claiming another size."""
    header = SMALL_PNG[12:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + SMALL_PNG[24:29]
    return SMALL_PNG[:12] + header + zlib.crc32(header).to_bytes(4, "big") + SMALL_PNG[33:]


# 100000 x 100000 pixels claimed: refused before any pixel is allocated.
BOMB = png_claiming(100_000, 100_000)


def malformed_rows(count: int, seed: int = 15) -> list[bytes]:
    rng = random.Random(seed)
    rows = [b"", b"junk", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", PHOTO[: len(PHOTO) // 2], BOMB]
    while len(rows) < count:
        data = bytearray(rng.choice([PHOTO[:4096], SMALL_PNG]))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
        rows.append(bytes(data[: rng.randrange(1, len(data) + 1)]))
    return rows


async def ask(triton_url: str, rows: list[bytes]) -> list[str]:
    """Each row in a request of its own: "ok" or "invalid: <Triton's message>"."""
    outcomes = []
    async with DetectorClient(triton_url) as client:
        for row in rows:
            try:
                await asyncio.wait_for(client.detect_in_one_request([row]), timeout=60)
                outcomes.append("ok")
            except InferenceRejected as error:
                outcomes.append(f"invalid: {error}")
    return outcomes


def test_malformed_image_rows_are_invalid_argument_and_the_model_survives(triton_url: str) -> None:
    rows = malformed_rows(40)
    outcomes = asyncio.run(ask(triton_url, rows))
    rejected = [outcome for outcome in outcomes if outcome.startswith("invalid: ")]
    assert len(rejected) >= 30, outcomes  # a few mutated images may still decode: fine, they got detections
    assert all(len(outcome) > len("invalid: ") for outcome in rejected)
    assert outcomes[:6] == [outcome for outcome in outcomes[:6] if outcome.startswith("invalid: ")]
    assert "too large" in outcomes[5] or "pixels" in outcomes[5], outcomes[5]
    assert asyncio.run(ask(triton_url, [PHOTO])) == ["ok"]  # still alive and serving


@pytest.mark.parametrize(
    "parameters",
    [
        {"score_threshold": "nan"},
        {"score_threshold": "1e999"},
        {"iou_threshold": -1},
        {"score_threshold": True},
        {"iou_threshold": "0.5x"},
    ],
)
def test_malformed_parameters_are_invalid_argument(triton_url: str, parameters: dict[str, object]) -> None:
    async def send() -> None:
        client = grpcclient.InferenceServerClient(triton_url)
        rows = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        rows.set_data_from_numpy(np.array([[PHOTO]], dtype=np.object_))
        try:
            await asyncio.wait_for(client.infer("detector", [rows], parameters=parameters), timeout=60)
        finally:
            await client.close()

    with pytest.raises(InferenceServerException) as caught:
        asyncio.run(send())
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert "threshold" in caught.value.message()
