"""Fuzzing image decoding (``processors.decode``), what the detector model runs on every frame's
bytes: any bytes give an image or a ``DecodeError`` saying why (INVALID_ARG from Triton, a dead
letter in the pipeline), never another exception, never a hang, never an oversized allocation.
Inputs: random bytes and small valid JPEGs and PNGs (colour, grey, 16-bit, alpha, progressive)
with a few bytes changed, cut, or spliced."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.decode import DecodeError, decode_for_size, probe_size
from tests.fuzz.strategies import FUZZ, mutated, tally

pytestmark = pytest.mark.fuzz

MAX_PIXELS = 4_000_000


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    grey = colour[:, :, 0]
    alpha = np.dstack([colour, grey])
    deep = (grey.astype(np.uint16) * 257).astype(np.uint16)
    return [
        cv2.imencode(".jpg", colour)[1].tobytes(),
        cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        cv2.imencode(".jpg", grey)[1].tobytes(),
        cv2.imencode(".png", colour)[1].tobytes(),
        cv2.imencode(".png", alpha)[1].tobytes(),
        cv2.imencode(".png", deep)[1].tobytes(),
        cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 0])[1].tobytes(),
    ]


SEEDS = _seeds()
IMAGES = st.one_of(
    st.binary(max_size=1024),
    st.binary(max_size=256).map(lambda tail: b"\xff\xd8\xff" + tail),
    st.binary(max_size=256).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
    mutated(st.sampled_from(SEEDS)),
)


@FUZZ
@given(data=IMAGES, longer_side=st.none() | st.integers(1, 640))
def test_any_bytes_decode_or_raise_decode_error(data: bytes, longer_side: int | None) -> None:
    tally()
    try:
        decoded = decode_for_size(data, longer_side, MAX_PIXELS)
    except DecodeError as error:
        assert str(error), "a DecodeError says why"
        return
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.ndim == 3 and decoded.pixels.shape[2] == 3
    assert decoded.width * decoded.height <= MAX_PIXELS


@FUZZ
@given(data=IMAGES)
def test_any_bytes_probe_or_raise_decode_error(data: bytes) -> None:
    tally()
    try:
        width, height = probe_size(data, MAX_PIXELS)
    except DecodeError:
        return
    assert width >= 1 and height >= 1 and width * height <= MAX_PIXELS
