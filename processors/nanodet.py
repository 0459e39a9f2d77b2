"""NanoDet's input tensor and the decoding of its per-stride heads into candidate boxes.

Contract of ``triton_models/nanodet/1/model.onnx`` (see its PROVENANCE.md): input ``images``
float32 [N,3,416,416], BGR, (pixel - mean) / std; per stride s in 8, 16, 32 the outputs
``scores_s{s}`` (sigmoid class scores [N,80,H,W]) and ``bins_s{s}`` (distance-bin logits
[N,44,H,W] = 4 sides left, top, right, bottom x 11 bins), H = W = 416 / s.

Decoding is GFL's: the distance of each side is the expectation of a softmax over the 11
bins, in units of the stride, measured from the cell centre ((x + 0.5) * s, (y + 0.5) * s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

INPUT_NAME = "images"
INPUT_SIZE = 416
STRIDES = (8, 16, 32)
NUM_CLASSES = 80
NUM_SIDES = 4
NUM_BINS = 11
OUTPUT_NAMES: tuple[str, ...] = tuple(f"{kind}_s{stride}" for stride in STRIDES for kind in ("scores", "bins"))
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
_INV_STD = (1.0 / STD_BGR).astype(np.float32)
_MEAN_OVER_STD = (MEAN_BGR / STD_BGR).astype(np.float32)
CENTER_OFFSET = 0.5  # NanoDet (GFL head) places each cell's anchor point at its centre
DEFAULT_MAX_CANDIDATES = 1000  # (cell, class) pairs kept for NMS, highest scores first


@dataclass(frozen=True)
class Candidates:
    """Scored boxes before NMS, in letterboxed canvas pixels (x1, y1, x2, y2)."""

    boxes: np.ndarray  # [M,4] float32
    scores: np.ndarray  # [M] float32
    class_ids: np.ndarray  # [M] int32

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def to_input_tensor(canvas: np.ndarray) -> np.ndarray:
    """A BGR uint8 [416,416,3] canvas to the normalised float32 [3,416,416] the network takes."""
    if canvas.shape != (INPUT_SIZE, INPUT_SIZE, 3) or canvas.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [{INPUT_SIZE},{INPUT_SIZE},3] canvas, got {canvas.dtype} {canvas.shape}")
    # (pixel - mean) / std as pixel * (1 / std) - mean / std, written straight into CHW order.
    tensor = np.empty((3, INPUT_SIZE, INPUT_SIZE), np.float32)
    np.multiply(canvas.transpose(2, 0, 1), _INV_STD[:, np.newaxis, np.newaxis], out=tensor)
    tensor -= _MEAN_OVER_STD[:, np.newaxis, np.newaxis]
    return tensor


def decode_outputs(
    outputs: Mapping[str, np.ndarray],
    score_threshold: float,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Candidates:
    """One image's heads (``scores_s8`` [80,H,W], ``bins_s8`` [44,H,W], ...) to candidates.

    Every (cell, class) pair scoring above the threshold is a candidate, as in NanoDet's
    own multi-class NMS, so one cell may propose a box for two classes.
    """
    parts = [_decode_stride(outputs, stride, score_threshold) for stride in STRIDES]
    boxes = np.concatenate([part.boxes for part in parts])
    scores = np.concatenate([part.scores for part in parts])
    class_ids = np.concatenate([part.class_ids for part in parts])
    if scores.shape[0] > max_candidates:
        keep = np.argpartition(-scores, max_candidates - 1)[:max_candidates]
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    return Candidates(boxes=boxes, scores=scores, class_ids=class_ids)


def _decode_stride(outputs: Mapping[str, np.ndarray], stride: int, score_threshold: float) -> Candidates:
    cells_per_side = INPUT_SIZE // stride
    cells = cells_per_side * cells_per_side
    scores = _head(outputs, f"scores_s{stride}", (NUM_CLASSES, cells_per_side, cells_per_side))
    bins = _head(outputs, f"bins_s{stride}", (NUM_SIDES * NUM_BINS, cells_per_side, cells_per_side))
    class_ids, cell_ids = np.nonzero(scores.reshape(NUM_CLASSES, cells) > score_threshold)
    picked_bins = bins.reshape(NUM_SIDES, NUM_BINS, cells)[:, :, cell_ids]  # [4,11,M]
    distances = expected_distance(picked_bins) * stride  # [4,M]: left, top, right, bottom
    centre_x = (cell_ids % cells_per_side + CENTER_OFFSET) * stride
    centre_y = (cell_ids // cells_per_side + CENTER_OFFSET) * stride
    boxes = np.stack(
        [centre_x - distances[0], centre_y - distances[1], centre_x + distances[2], centre_y + distances[3]], axis=1
    ).astype(np.float32)
    picked_scores = scores.reshape(NUM_CLASSES, cells)[class_ids, cell_ids].astype(np.float32)
    return Candidates(boxes=boxes, scores=picked_scores, class_ids=class_ids.astype(np.int32))


def expected_distance(bin_logits: np.ndarray) -> np.ndarray:
    """GFL's integral: softmax over the bins axis (1), then the expected bin index."""
    logits = bin_logits.astype(np.float32)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    return np.tensordot(np.arange(NUM_BINS, dtype=np.float32), probabilities, axes=([0], [1]))


def _head(outputs: Mapping[str, np.ndarray], name: str, shape: tuple[int, int, int]) -> np.ndarray:
    if name not in outputs:
        raise ValueError(f"NanoDet output {name} is missing (got {sorted(outputs)})")
    head = np.asarray(outputs[name])
    if head.shape != shape:
        raise ValueError(f"NanoDet output {name} has shape {head.shape}, expected {shape}")
    return head


def split_batch(outputs: Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """Image ``index`` of batched heads [N,C,H,W] as that image's own [C,H,W] heads."""
    return {name: np.asarray(outputs[name])[index] for name in OUTPUT_NAMES}
