"""Class-aware non-maximum suppression.

OpenCV's ``cv2.dnn.NMSBoxesBatched`` does the job in C++: greedy NMS per class (it offsets
each class's boxes apart), highest score first, suppressing IoU > threshold. It agrees
exactly with a brute-force reference in tests/unit/test_nms.py on OpenCV 4.10 and 4.14.
"""

from __future__ import annotations

import cv2
import numpy as np


def class_aware_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int,
) -> np.ndarray:
    """Indices of the kept boxes ([K] int64, highest score first, K <= max_detections).

    boxes are [M,4] x1,y1,x2,y2; a box suppresses a lower-scored box of the same class
    whose IoU with it exceeds ``iou_threshold``. Boxes of different classes never interact.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    if not boxes.shape[0] == scores.shape[0] == class_ids.shape[0]:
        raise ValueError(f"boxes {boxes.shape}, scores {scores.shape} and class ids {class_ids.shape} differ in length")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within [0, 1], got {iou_threshold}")
    if max_detections < 0:
        raise ValueError(f"max_detections must not be negative, got {max_detections}")
    if boxes.shape[0] == 0 or max_detections == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    # Score threshold -inf: callers have already thresholded; NMS must not drop anything else.
    kept = cv2.dnn.NMSBoxesBatched(xywh, scores, class_ids, -np.inf, float(iou_threshold))
    return np.asarray(kept, dtype=np.int64).reshape(-1)[:max_detections]
