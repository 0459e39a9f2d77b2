"""Letterbox: resize keeping the aspect ratio, centre on a square canvas, and map boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Black, as NanoDet's own keep-ratio warp pads during training (triton_models/nanodet/PROVENANCE.md).
DEFAULT_PAD_BGR = (0, 0, 0)


@dataclass(frozen=True)
class LetterboxTransform:
    """How an original image was placed on the canvas. Scales are per axis because the
    resized size is rounded to whole pixels."""

    width: int  # original image size in pixels
    height: int
    size: int  # side of the square canvas
    scale_x: float  # resized_width / width
    scale_y: float
    pad_x: int  # left offset of the resized image on the canvas
    pad_y: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """[K,4] x1,y1,x2,y2 canvas boxes to original-image pixels, clipped to the image."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        x = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        y = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        mapped = np.empty_like(boxes)
        mapped[:, 0::2] = np.clip(x, 0.0, self.width)
        mapped[:, 1::2] = np.clip(y, 0.0, self.height)
        return mapped


def plan_letterbox(width: int, height: int, size: int) -> LetterboxTransform:
    """Where an image of width x height goes on a size x size canvas (no pixels touched)."""
    if width < 1 or height < 1:
        raise ValueError(f"image must be at least 1x1, got {width}x{height}")
    if size < 1:
        raise ValueError(f"canvas size must be positive, got {size}")
    scale = size / max(width, height)
    # max(1, ...): a 10000x1 strip still keeps one row instead of vanishing.
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return LetterboxTransform(
        width=width,
        height=height,
        size=size,
        scale_x=new_w / width,
        scale_y=new_h / height,
        pad_x=(size - new_w) // 2,
        pad_y=(size - new_h) // 2,
    )


def letterbox(
    image: np.ndarray,
    size: int = 416,
    pad_bgr: tuple[int, int, int] = DEFAULT_PAD_BGR,
    source_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, LetterboxTransform]:
    """Place a BGR uint8 [H,W,3] image on a size x size canvas; return the canvas and transform.

    ``source_size`` (width, height) is the size of the image as encoded when ``image`` was
    decoded at a reduced scale: the transform then maps boxes to the original's pixels.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 [H,W,3] image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    transform = plan_letterbox(*(source_size or (width, height)), size)
    new_w = round(transform.width * transform.scale_x)
    new_h = round(transform.height * transform.scale_y)
    # INTER_AREA averages when shrinking (no aliasing of 4K frames); linear when enlarging.
    shrinking = new_w < width or new_h < height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = pad_bgr
    canvas[transform.pad_y : transform.pad_y + new_h, transform.pad_x : transform.pad_x + new_w] = resized
    return canvas, transform
