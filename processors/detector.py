"""The detector pipeline around a network (NanoDet by default, or any ``DetectorSpec``): encoded
bytes in, boxes in original pixels out.

``preprocess`` and ``postprocess`` are what the Triton ``detector`` model calls around its
call to ``nanodet``; ``detect_batch`` strings them together for any ``infer`` function (the
Triton BLS call, or an in-process ONNX Runtime session), so the served and the in-process
paths run the very same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from processors.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_for_size
from processors.decoders import NANODET_SPEC, DetectorSpec, split_batch
from processors.letterbox import LetterboxTransform, letterbox
from processors.nanodet import to_input_tensor
from processors.nms import class_aware_nms

DEFAULT_SCORE_THRESHOLD = 0.35
DEFAULT_IOU_THRESHOLD = 0.6
MAX_DETECTIONS = 100
MAX_BATCH = 16  # the nanodet model's max_batch_size

InferFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class ObjectDetections:
    """Detections of one image: boxes [K,4] float32 x1,y1,x2,y2 in original pixels,
    scores [K] float32 (highest first), class_ids [K] int32 (COCO, see schemas.coco)."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    model_version: str = ""  # the served version that found them, when a server said so

    def __post_init__(self) -> None:
        count = self.scores.shape[0] if self.scores.ndim == 1 else -1
        if self.boxes.shape != (count, 4) or self.class_ids.shape != (count,):
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}"
            )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> ObjectDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))


@dataclass(frozen=True)
class Thresholds:
    score: float = DEFAULT_SCORE_THRESHOLD
    iou: float = DEFAULT_IOU_THRESHOLD

    def __post_init__(self) -> None:
        for name, value in (("score_threshold", self.score), ("iou_threshold", self.iou)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")


def thresholds_from_parameters(parameters: Mapping[str, object]) -> Thresholds:
    """Thresholds from request parameters (numbers or numeric strings); defaults when absent.

    Raises ValueError naming the parameter for a value that is not a number in [0, 1].
    """
    values = {}
    for name, default in (("score_threshold", DEFAULT_SCORE_THRESHOLD), ("iou_threshold", DEFAULT_IOU_THRESHOLD)):
        raw = parameters.get(name, default)
        if isinstance(raw, bool):
            raise ValueError(f"{name} must be a number, got {raw!r}")
        try:
            values[name] = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be a number, got {raw!r}") from error
    return Thresholds(score=values["score_threshold"], iou=values["iou_threshold"])


def preprocess(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, spec: DetectorSpec = NANODET_SPEC
) -> tuple[np.ndarray, LetterboxTransform]:
    """Encoded JPEG/PNG bytes to the network's input (NanoDet's [3,416,416] by default); DecodeError
    for bad bytes."""
    size = spec.input_size
    decoded = decode_for_size(data, size, max_pixels)
    if spec.resize == "stretch":
        canvas, transform = _stretch(decoded.pixels, size, (decoded.width, decoded.height))
    else:
        pad = (spec.pad_value,) * 3
        canvas, transform = letterbox(decoded.pixels, size, pad, source_size=(decoded.width, decoded.height))
    return (to_input_tensor(canvas) if spec == NANODET_SPEC else spec.to_input_tensor(canvas)), transform


def _stretch(image: np.ndarray, size: int, source_size: tuple[int, int]) -> tuple[np.ndarray, LetterboxTransform]:
    """The whole image resized to size x size, aspect ratio not kept (as some networks were trained)."""
    width, height = source_size
    canvas = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return canvas, LetterboxTransform(width, height, size, size / width, size / height, 0, 0)


def postprocess(
    outputs: Mapping[str, np.ndarray],
    transform: LetterboxTransform,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
    spec: DetectorSpec = NANODET_SPEC,
) -> ObjectDetections:
    """One image's network outputs to detections in original pixels: decode (the spec's
    decoder), NMS, map back.

    A box that lies entirely in the letterbox padding has no area once clipped to the
    image and is dropped.
    """
    candidates = spec.decode(outputs, score_threshold)
    kept = class_aware_nms(candidates.boxes, candidates.scores, candidates.class_ids, iou_threshold, max_detections)
    boxes = transform.to_original(candidates.boxes[kept])
    visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return ObjectDetections(
        boxes=np.ascontiguousarray(boxes[visible], dtype=np.float32),
        scores=candidates.scores[kept][visible].astype(np.float32),
        class_ids=candidates.class_ids[kept][visible].astype(np.int32),
    )


def detect_batch(
    images: Sequence[bytes],
    infer: InferFn,
    thresholds: Sequence[Thresholds],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batch: int = MAX_BATCH,
    spec: DetectorSpec = NANODET_SPEC,
) -> list[ObjectDetections | DecodeError]:
    """Detect objects in every image, calling ``infer`` on batches of at most ``max_batch``.

    An image that does not decode yields its DecodeError in its place; the others go on.
    """
    if len(thresholds) != len(images):
        raise ValueError(f"{len(images)} images but {len(thresholds)} thresholds")
    results: list[ObjectDetections | DecodeError] = []
    prepared: list[tuple[int, np.ndarray, LetterboxTransform]] = []
    for index, data in enumerate(images):
        try:
            tensor, transform = preprocess(data, max_pixels, spec)
        except DecodeError as error:
            results.append(error)
            continue
        results.append(ObjectDetections.empty())  # replaced below
        prepared.append((index, tensor, transform))
    max_batch = min(max_batch, spec.max_batch)
    for start in range(0, len(prepared), max_batch):
        chunk = prepared[start : start + max_batch]
        outputs = infer(np.stack([tensor for _, tensor, _ in chunk]))
        for position, (index, _, transform) in enumerate(chunk):
            wanted = thresholds[index]
            results[index] = postprocess(
                split_batch(outputs, spec, position), transform, wanted.score, wanted.iou, spec=spec
            )
    return results


def pad_detections(detections: ObjectDetections, size: int = MAX_DETECTIONS) -> dict[str, np.ndarray]:
    """Fixed-size arrays for Triton's outputs: padding boxes/scores 0 and class id -1."""
    count = min(len(detections), size)
    boxes = np.zeros((size, 4), np.float32)
    scores = np.zeros(size, np.float32)
    class_ids = np.full(size, -1, np.int32)
    boxes[:count], scores[:count], class_ids[:count] = (
        detections.boxes[:count],
        detections.scores[:count],
        detections.class_ids[:count],
    )
    return {
        "NUM_DETECTIONS": np.array([count], np.int32),
        "BOXES": boxes,
        "SCORES": scores,
        "CLASS_IDS": class_ids,
    }


def unpad_detections(num: int, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> ObjectDetections:
    """The inverse of ``pad_detections``, for clients reading Triton's fixed-size outputs."""
    if not 0 <= num <= scores.shape[0]:
        raise ValueError(f"NUM_DETECTIONS {num} is outside 0..{scores.shape[0]}")
    return ObjectDetections(
        boxes=np.ascontiguousarray(boxes[:num], dtype=np.float32).reshape(num, 4),
        scores=np.ascontiguousarray(scores[:num], dtype=np.float32),
        class_ids=np.ascontiguousarray(class_ids[:num], dtype=np.int32),
    )
