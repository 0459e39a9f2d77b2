"""Encoded image bytes (JPEG or PNG) to a BGR uint8 array, refusing anything else clearly.

Pillow decodes, not OpenCV: OpenCV 4.10 (Triton's environment) silently returns a
half-grey image for a truncated JPEG where 4.14 returns None, while Pillow raises in
both environments (the same Pillow version is installed in each). Pillow also reads the
header lazily, so an oversized image is refused before its pixels are allocated.
EXIF orientation is not applied: boxes refer to the pixel grid as stored (frames encoded
by cameras and by our ingest carry none).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

DEFAULT_MAX_PIXELS = 40_000_000
# Pillow names a JPEG with several frames (phones' MPO) differently; it still decodes as one.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG"})
# Only these parsers ever see untrusted bytes (Pillow would otherwise try every plugin it has).
_PILLOW_PLUGINS = ("JPEG", "PNG")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


class DecodeError(ValueError):
    """The bytes are not a usable JPEG/PNG image. The message says why, for the dead-letter topic."""


def probe_size(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone; raises DecodeError like ``decode_image`` would."""
    with _open(data, max_pixels) as image:
        return image.size


@dataclass(frozen=True)
class DecodedImage:
    """Pixels decoded at a possibly reduced scale, and the size of the image as encoded."""

    pixels: np.ndarray  # BGR uint8 [h, w, 3]
    width: int
    height: int


def decode_for_size(data: bytes, longer_side: int | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode, letting a JPEG skip detail that a resize to ``longer_side`` would discard.

    libjpeg can scale by 1/2, 1/4 or 1/8 inside the inverse DCT (Pillow's ``draft``); the
    largest such reduction that keeps the image at least as large as its resize target is
    used, so a 1920x1080 frame bound for 416 pixels decodes as 480x270, 2.4x faster.
    ``longer_side=None`` decodes at full size.
    """
    with _open(data, max_pixels) as image:
        width, height = image.size
        if longer_side is not None and image.format in ("JPEG", "MPO"):
            scale = longer_side / max(width, height)
            if scale < 1.0:
                image.draft(image.mode, (max(1, round(width * scale)), max(1, round(height * scale))))
        try:
            image.load()
            rgb = _to_rgb_array(image)
        except (OSError, SyntaxError, ValueError) as error:
            raise DecodeError(f"corrupt or truncated {image.format} image: {error}") from error
    return DecodedImage(pixels=cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), width=width, height=height)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and check format and size before any pixel is decoded."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if not data:
        raise DecodeError("empty image data (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit below is the one that applies; Pillow's global one only warns.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_PILLOW_PLUGINS)
    except Image.DecompressionBombError as error:
        raise DecodeError(f"image too large: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        claimed = _sniff_format(data)
        if claimed is not None:
            raise DecodeError(f"corrupt or truncated {claimed} image ({len(data)} bytes): {error}") from error
        raise DecodeError(f"not a JPEG or PNG image ({len(data)} bytes, starting {data[:8]!r})") from error
    if image.format not in SUPPORTED_FORMATS:
        image.close()
        raise DecodeError(f"unsupported image format {image.format}: only JPEG and PNG are accepted")
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise DecodeError(
            f"image too large: {width}x{height} = {width * height / 1e6:.1f} MP, "
            f"above the limit of {max_pixels / 1e6:.1f} MP"
        )
    return image


def _sniff_format(data: bytes) -> str | None:
    """The format the leading magic bytes claim, to tell a damaged image from a non-image."""
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    return None


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode (grey, palette, RGBA, CMYK, 16-bit grey) to RGB uint8; alpha is dropped."""
    if image.mode in _SIXTEEN_BIT_GREY:
        # convert("RGB") would clip 16-bit values at 255; keep the high byte instead.
        grey = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, np.newaxis], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)
