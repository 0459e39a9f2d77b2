"""processors.decode: JPEG/PNG bytes to BGR, and clear DecodeErrors for everything else."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from processors.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_for_size, probe_size


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Full-size decode: what the detector does when no resize target is given."""
    return decode_for_size(data, None, max_pixels).pixels


def gradient_bgr(width: int, height: int) -> np.ndarray:
    """A BGR image whose three channels differ, so a channel swap cannot go unnoticed."""
    x = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, np.newaxis].repeat(width, axis=1)
    return np.stack([x, y, 255 - x], axis=2).astype(np.uint8)


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height whose pixel data is a few bytes: decoding it would fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def pillow_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


JPEG = encode(gradient_bgr(64, 48), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
PNG = encode(gradient_bgr(64, 48), ".png")


BAD_BYTES = [
    pytest.param(b"", "empty image data", id="empty"),
    pytest.param(b"person\nbicycle\ncar\n", "not a JPEG or PNG", id="text"),
    pytest.param(bytes(range(256)) * 4, "not a JPEG or PNG", id="random"),
    pytest.param(pillow_bytes(Image.new("RGB", (4, 4)), "GIF"), "not a JPEG or PNG", id="gif"),
    pytest.param(pillow_bytes(Image.new("RGB", (4, 4)), "BMP"), "not a JPEG or PNG", id="bmp"),
    pytest.param(JPEG[:20], "corrupt or truncated JPEG", id="jpeg-header-only"),
    pytest.param(JPEG[: len(JPEG) // 2], "corrupt or truncated JPEG", id="jpeg-cut-in-half"),
    pytest.param(PNG[: len(PNG) // 2], "corrupt or truncated PNG", id="png-cut-in-half"),
    pytest.param(PNG[:8], "corrupt or truncated PNG", id="png-signature-only"),
    pytest.param(png_header_only(64, 48), "corrupt or truncated PNG", id="png-without-pixels"),
    # Refused from the header: the pixel data (absent here) is never decoded.
    pytest.param(png_header_only(100_000, 100_000), "too large", id="png-claiming-100000x100000"),
    pytest.param(png_header_only(8000, 6000), r"too large: 8000x6000 = 48.0 MP", id="png-claiming-8000x6000"),
]


@pytest.mark.parametrize(("data", "message"), BAD_BYTES)
def test_bad_bytes_raise_decode_error_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_image(data)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


@pytest.mark.parametrize(
    ("make", "max_pixels", "expected"),
    [
        (lambda: encode(gradient_bgr(200, 100), ".png"), 20_000, (100, 200, 3)),  # exactly at the limit
        (lambda: encode(gradient_bgr(200, 100), ".png"), 19_999, DecodeError),
        (lambda: encode(gradient_bgr(1, 1), ".png"), DEFAULT_MAX_PIXELS, (1, 1, 3)),
        (lambda: encode(gradient_bgr(1, 1), ".jpg"), DEFAULT_MAX_PIXELS, (1, 1, 3)),
        (lambda: encode(gradient_bgr(5000, 1), ".png"), DEFAULT_MAX_PIXELS, (1, 5000, 3)),
        (lambda: encode(gradient_bgr(64, 48), ".png"), 0, ValueError),
    ],
)
def test_pixel_limit_and_tiny_images(
    make: Callable[[], bytes], max_pixels: int, expected: tuple[int, int, int] | type[Exception]
) -> None:
    if isinstance(expected, tuple):
        assert decode_image(make(), max_pixels).shape == expected
    else:
        with pytest.raises(expected):
            decode_image(make(), max_pixels)


def test_oversized_jpeg_is_refused_from_its_header() -> None:
    """A 10000x10000 JPEG (1.5 MB at quality 5) is refused without decoding 300 MB of pixels."""
    big = encode(np.zeros((10_000, 10_000, 3), np.uint8), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 5)
    assert probe_size(big, max_pixels=10**9) == (10_000, 10_000)
    with pytest.raises(DecodeError, match=r"10000x10000 = 100.0 MP, above the limit of 40.0 MP"):
        decode_image(big)


def test_png_decodes_losslessly_in_bgr_order() -> None:
    original = gradient_bgr(64, 48)
    decoded = decode_image(encode(original, ".png"))
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, original)


def test_jpeg_decodes_like_opencv() -> None:
    np.testing.assert_array_equal(decode_image(JPEG), cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR))


@pytest.mark.parametrize(
    ("mode", "colour", "expected_bgr"),
    [
        ("RGB", (255, 0, 0), (0, 0, 255)),
        ("RGBA", (10, 20, 30, 0), (30, 20, 10)),  # alpha dropped, colour kept
        ("L", 77, (77, 77, 77)),
        ("P", 3, None),  # palette index 3; expected from Pillow's own RGB conversion below
        ("CMYK", (0, 255, 255, 0), (0, 0, 255)),
    ],
)
def test_other_pixel_modes_become_bgr(mode: str, colour: object, expected_bgr: tuple[int, int, int] | None) -> None:
    image = Image.new(mode, (3, 2), colour)  # type: ignore[arg-type]
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(pillow_bytes(image, fmt))
    if expected_bgr is None:
        expected_bgr = tuple(reversed(image.convert("RGB").getpixel((0, 0))))  # type: ignore[arg-type]
    assert decoded.shape == (2, 3, 3)
    np.testing.assert_allclose(decoded[0, 0], expected_bgr, atol=2)


def test_sixteen_bit_grey_keeps_the_high_byte() -> None:
    grey = np.arange(0, 65536, 256, dtype=np.uint16).reshape(16, 16)
    decoded = decode_image(encode(grey, ".png"))
    np.testing.assert_array_equal(decoded[:, :, 0], (grey >> 8).astype(np.uint8))
    np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])


def test_probe_size_reads_the_header_only() -> None:
    assert probe_size(png_header_only(640, 480)) == (640, 480)
    with pytest.raises(DecodeError):
        probe_size(b"not an image")


@pytest.mark.parametrize(
    ("width", "height", "longer_side", "ext", "expected_pixels"),
    [
        (1920, 1080, 416, ".jpg", (270, 480)),  # libjpeg scales by 1/4 in the IDCT; still >= 416x234
        (1352, 900, 416, ".jpg", (450, 676)),  # by 1/2: 1/4 would give 338 < 416
        (768, 576, 416, ".jpg", (576, 768)),  # less than 2x too large: full size
        (300, 200, 416, ".jpg", (200, 300)),  # enlarging later: full size
        (1920, 1080, 416, ".png", (1080, 1920)),  # PNG has no reduced decode
        (1920, 1080, None, ".jpg", (1080, 1920)),
    ],
)
def test_decode_for_size_reduces_jpegs_but_never_below_the_target(
    width: int, height: int, longer_side: int | None, ext: str, expected_pixels: tuple[int, int]
) -> None:
    decoded = decode_for_size(encode(gradient_bgr(width, height), ext), longer_side)
    assert (decoded.width, decoded.height) == (width, height)
    assert decoded.pixels.shape == (*expected_pixels, 3)
    if longer_side is not None:
        scale = longer_side / max(width, height)
        assert decoded.pixels.shape[1] >= min(width, round(width * scale))
        assert decoded.pixels.shape[0] >= min(height, round(height * scale))


def test_reduced_decode_looks_like_a_resized_full_decode() -> None:
    image = cv2.GaussianBlur(gradient_bgr(1600, 1200), (0, 0), 3)
    data = encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95)
    reduced = decode_for_size(data, 416).pixels
    resized = cv2.resize(decode_image(data), (reduced.shape[1], reduced.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - resized.astype(int)).mean() < 2.0
