"""Camera-sized JPEGs of a chosen size, made deterministically from the bundled photos.

The bundled photos are 0.1-1.4 MB and 640-1352 pixels wide; a pipeline benchmark wants
frames as a camera sends them: 1280x720, about 150 KB each. Each photo is scaled to
cover 1280x720 and centre-cropped, then (for variety between frames) mirrored and given
a light, seeded noise texture, and encoded at the JPEG quality whose size comes closest
to the target. Same inputs, same libjpeg -> same bytes.

    frames = camera_jpegs(target_bytes=150_000)
    [len(frame.data) for frame in frames]  # each within ~20 % of 150 KB
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from framestream.bench.photos import PHOTOS, Photo, image_files

FRAME_WIDTH, FRAME_HEIGHT = 1280, 720
QUALITIES = range(60, 97)
NOISE_SIGMA = 2.0


def cover_crop(image: np.ndarray, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> np.ndarray:
    """Scale to cover width x height (aspect kept), then cut the centre out."""
    scale = max(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(
        image,
        (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))),
        interpolation=cv2.INTER_CUBIC,
    )
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def encode_near(image: np.ndarray, target_bytes: int) -> bytes:
    """The JPEG encoding whose size is closest to ``target_bytes`` (size grows with quality: bisect)."""
    low, high = QUALITIES.start, QUALITIES.stop - 1
    best = b""
    while low <= high:
        quality = (low + high) // 2
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if not best or abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        if len(data) < target_bytes:
            low = quality + 1
        else:
            high = quality - 1
    return best


def camera_jpegs(target_bytes: int = 150_000, folder: Path = PHOTOS, variants: int = 2) -> list[Photo]:
    """``variants`` frames per bundled photo (plain, mirrored, ...), each near ``target_bytes``."""
    if target_bytes < 10_000:
        raise ValueError(f"target_bytes must be at least 10000, got {target_bytes}")
    frames = []
    for index, path in enumerate(image_files(folder)):
        base = cover_crop(cv2.imread(str(path)))
        for variant in range(variants):
            image = base[:, ::-1] if variant % 2 else base
            noise = np.random.default_rng(index * 1000 + variant).normal(0.0, NOISE_SIGMA, image.shape)
            textured = np.clip(image + noise, 0, 255).astype(np.uint8)
            frames.append(Photo(encode_near(textured, target_bytes), FRAME_WIDTH, FRAME_HEIGHT))
    return frames
