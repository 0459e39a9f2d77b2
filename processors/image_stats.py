"""Cheap per-frame image statistics (brightness, contrast, sharpness) for health and drift panels.

Computed on a grey image downscaled to a fixed width, so that sharpness is
comparable between a 640-pixel and a 4K camera and costs the same for both.
Pure: numpy/OpenCV in, floats out (works with numpy 1.26 and 2.x).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

STATS_WIDTH = 320


@dataclass(frozen=True)
class ImageStatsValues:
    """Field-for-field what ``schemas.ImageStats`` expects."""

    brightness: float  # mean grey level, 0..255
    sharpness: float  # variance of the Laplacian, >= 0; low values mean blur or a blank scene
    contrast: float  # standard deviation of the grey levels, 0..127.5; low values mean fog or glare


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    raise ValueError(f"expected a grey, BGR or BGRA image, got shape {image.shape}")


def downscaled_grey(image: np.ndarray, width: int = STATS_WIDTH) -> np.ndarray:
    """Grey uint8 image no wider than ``width`` (aspect ratio kept; never upscaled)."""
    if image.size == 0:
        raise ValueError("empty image")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    grey = _grey(image)
    height, current_width = grey.shape
    if current_width <= width:
        return grey
    new_height = max(1, round(height * width / current_width))
    return cv2.resize(grey, (width, new_height), interpolation=cv2.INTER_AREA)


def image_stats(image: np.ndarray, width: int = STATS_WIDTH) -> ImageStatsValues:
    grey = downscaled_grey(image, width)
    brightness = float(np.clip(grey.mean(), 0.0, 255.0))
    laplacian = cv2.Laplacian(grey, cv2.CV_64F)
    sharpness = float(max(laplacian.var(), 0.0))
    contrast = float(np.clip(grey.std(), 0.0, 127.5))
    return ImageStatsValues(brightness=brightness, sharpness=sharpness, contrast=contrast)
