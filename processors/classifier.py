"""The image classifier around a backbone + linear head ONNX model: bytes in, a label out.

Contract of a classifier model (``framestream train classifier`` writes one, e.g.
``triton_models/defects/1/model.onnx``): input ``images`` float32 [N,3,S,S], BGR,
(pixel - mean) / std with NanoDet's mean and std (its backbone was trained so), S = 320;
output ``probabilities`` float32 [N,C], softmax over the labels stored in the model's
metadata (``labels``, a JSON list). ``classify_batch`` strings decoding, preprocessing and
the network together for any ``infer`` function (the served Triton model, or an in-process
ONNX Runtime session), so the served and the in-process paths run the very same code.

Usage::

    infer = lambda batch: session.run(["probabilities"], {"images": batch})[0]
    results = classify_batch([jpeg_bytes], infer, ("ok", "defect"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from processors.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_for_size
from processors.nanodet import MEAN_BGR, STD_BGR

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
INPUT_SIZE = 320  # a multiple of the backbone's stride 32; elpv cells are 300x300
MAX_BATCH = 16

InferFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Classification:
    """One image's class: the most probable label, its probability, and all probabilities."""

    class_id: int
    label: str
    score: float
    probabilities: tuple[float, ...]


def to_input_tensor(image_bgr: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """A BGR uint8 [h,w,3] image, resized (not letterboxed: a class needs no geometry) to the
    normalised float32 [3,size,size] the backbone takes."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [h,w,3] BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    resized = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_AREA)
    tensor = (resized.astype(np.float32) - MEAN_BGR) / STD_BGR
    return np.ascontiguousarray(tensor.transpose(2, 0, 1))


def preprocess(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, size: int = INPUT_SIZE) -> np.ndarray:
    """Encoded JPEG/PNG bytes to the network's input row; DecodeError for a bad image."""
    return to_input_tensor(decode_for_size(data, size, max_pixels).pixels, size)


def to_classification(probabilities: np.ndarray, labels: Sequence[str]) -> Classification:
    """The argmax of one row of probabilities, named by ``labels``."""
    if probabilities.shape != (len(labels),):
        raise ValueError(f"expected {len(labels)} probabilities, got shape {probabilities.shape}")
    class_id = int(np.argmax(probabilities))
    return Classification(
        class_id=class_id,
        label=labels[class_id],
        score=float(probabilities[class_id]),
        probabilities=tuple(float(p) for p in probabilities),
    )


def classify_batch(
    images: Sequence[bytes],
    infer: InferFn,
    labels: Sequence[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Classification | DecodeError]:
    """Classify encoded images, ``MAX_BATCH`` rows per network call; a bad image yields its
    DecodeError in its place and the others are still classified."""
    results: list[Classification | DecodeError | None] = [None] * len(images)
    rows: list[np.ndarray] = []
    where: list[int] = []
    for index, data in enumerate(images):
        try:
            rows.append(preprocess(data, max_pixels))
            where.append(index)
        except DecodeError as error:
            results[index] = error
    for start in range(0, len(rows), MAX_BATCH):
        probabilities = infer(np.stack(rows[start : start + MAX_BATCH]))
        for offset, row in enumerate(probabilities):
            results[where[start + offset]] = to_classification(np.asarray(row), labels)
    return [result for result in results if result is not None]


@dataclass(frozen=True)
class Augmentation:
    """Random photometric and geometric changes for training; each one applies with its
    probability. Cells on a line come in any of the 8 square orientations, so flips and
    right-angle turns keep the label; small turns, light, blur and noise mimic the camera."""

    flip: float = 0.5
    rotate90: float = 0.5
    max_angle: float = 5.0
    max_brightness: float = 0.15  # fraction of the full scale, added
    max_contrast: float = 0.2  # fractional gain about the mean
    blur: float = 0.3
    noise_sigma: float = 4.0  # grey levels, Gaussian

    def __post_init__(self) -> None:
        for name in ("flip", "rotate90", "blur"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("max_angle", "max_brightness", "max_contrast", "noise_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A changed copy of a uint8 image; the same ``rng`` state gives the same result."""
        out = image
        if rng.random() < self.flip:
            out = out[:, ::-1]
        if rng.random() < self.rotate90:
            out = np.rot90(out, int(rng.integers(1, 4)))
        out = np.ascontiguousarray(out)
        if self.max_angle > 0:
            height, width = out.shape[:2]
            matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-self.max_angle, self.max_angle), 1)
            out = cv2.warpAffine(out, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        pixels = out.astype(np.float32)
        gain = 1.0 + rng.uniform(-self.max_contrast, self.max_contrast)
        shift = 255.0 * rng.uniform(-self.max_brightness, self.max_brightness)
        pixels = (pixels - pixels.mean()) * gain + pixels.mean() + shift
        if rng.random() < self.blur:
            pixels = cv2.GaussianBlur(pixels, (3, 3), 0)
        if self.noise_sigma > 0:
            pixels = pixels + rng.normal(0.0, self.noise_sigma, pixels.shape).astype(np.float32)
        return np.clip(pixels, 0, 255).astype(np.uint8)
