"""processors.detector: thresholds, pre/postprocess, batching around any ``infer`` function,
and the fixed-size padding of Triton's outputs."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import pytest

from processors.decode import DecodeError
from processors.detector import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    ObjectDetections,
    Thresholds,
    detect_batch,
    pad_detections,
    postprocess,
    preprocess,
    thresholds_from_parameters,
    unpad_detections,
)
from processors.letterbox import plan_letterbox
from processors.nanodet import INPUT_SIZE, MEAN_BGR, NUM_BINS, NUM_CLASSES, STD_BGR, STRIDES


def png_of(width: int, height: int, blue: int = 90) -> bytes:
    image = np.full((height, width, 3), (blue, 100, 110), np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def heads_with_object(
    class_id: int, score: float = 0.9, cell: int = 13, half_size_bins: int = 2
) -> dict[str, np.ndarray]:
    """One image's heads with a single object at stride-16 cell (cell, cell): the canvas box is
    centre (cell + 0.5) * 16 -/+ half_size_bins * 16."""
    heads = {}
    for stride in STRIDES:
        cells = INPUT_SIZE // stride
        heads[f"scores_s{stride}"] = np.zeros((NUM_CLASSES, cells, cells), np.float32)
        heads[f"bins_s{stride}"] = np.zeros((4 * NUM_BINS, cells, cells), np.float32)
    heads["scores_s16"][class_id, cell, cell] = score
    for side in range(4):
        heads["bins_s16"][side * NUM_BINS + half_size_bins, cell, cell] = 30.0
    return heads


class ColourCodedNetwork:
    """Stands in for NanoDet: every image gets one object at the canvas centre whose class is
    the blue value of the centre pixel // 4, so the test can tell images apart. Records batch sizes."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        self.batch_sizes.append(batch.shape[0])
        blues = batch[:, 0, INPUT_SIZE // 2, INPUT_SIZE // 2] * STD_BGR[0] + MEAN_BGR[0]
        per_image = [heads_with_object(int(round(blue)) // 4) for blue in blues]
        return {name: np.stack([heads[name] for heads in per_image]) for name in per_image[0]}


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, Thresholds(DEFAULT_SCORE_THRESHOLD, DEFAULT_IOU_THRESHOLD)),
        ({"score_threshold": 0.5}, Thresholds(0.5, DEFAULT_IOU_THRESHOLD)),
        ({"score_threshold": "0.25", "iou_threshold": "0.45"}, Thresholds(0.25, 0.45)),
        ({"iou_threshold": 1}, Thresholds(DEFAULT_SCORE_THRESHOLD, 1.0)),
        ({"score_threshold": 0, "other": "ignored"}, Thresholds(0.0, DEFAULT_IOU_THRESHOLD)),
        ({"score_threshold": "high"}, "score_threshold must be a number"),
        ({"score_threshold": True}, "score_threshold must be a number"),
        ({"iou_threshold": None}, "iou_threshold must be a number"),
        ({"score_threshold": 1.5}, r"score_threshold must be within \[0, 1\]"),
        ({"iou_threshold": -0.1}, r"iou_threshold must be within \[0, 1\]"),
        ({"iou_threshold": "nan"}, r"iou_threshold must be within \[0, 1\]"),
    ],
)
def test_thresholds_from_parameters(parameters: dict[str, object], expected: Thresholds | str) -> None:
    if isinstance(expected, Thresholds):
        assert thresholds_from_parameters(parameters) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            thresholds_from_parameters(parameters)


def test_preprocess_gives_the_network_input_and_the_transform() -> None:
    tensor, transform = preprocess(png_of(640, 480))
    assert tensor.shape == (3, INPUT_SIZE, INPUT_SIZE) and tensor.dtype == np.float32
    assert transform == plan_letterbox(640, 480, INPUT_SIZE)
    with pytest.raises(DecodeError):
        preprocess(b"")
    with pytest.raises(DecodeError, match="too large"):
        preprocess(png_of(640, 480), max_pixels=640 * 480 - 1)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (416, 416), (1352, 900), (1, 1)])
def test_postprocess_maps_the_box_to_original_pixels(width: int, height: int) -> None:
    transform = plan_letterbox(width, height, INPUT_SIZE)
    detections = postprocess(heads_with_object(class_id=16), transform)
    canvas_box = np.array([[216 - 32, 216 - 32, 216 + 32, 216 + 32]], np.float32)
    np.testing.assert_allclose(detections.boxes, transform.to_original(canvas_box), atol=1e-3)
    assert detections.class_ids.tolist() == [16]
    assert detections.scores.tolist() == pytest.approx([0.9])


@pytest.mark.parametrize(
    ("score", "score_threshold", "expected_count"),
    [(0.9, 0.35, 1), (0.3, 0.35, 0), (0.36, 0.35, 1), (0.9, 0.95, 0)],
)
def test_postprocess_applies_the_score_threshold(score: float, score_threshold: float, expected_count: int) -> None:
    detections = postprocess(heads_with_object(1, score), plan_letterbox(640, 480, INPUT_SIZE), score_threshold)
    assert len(detections) == expected_count


def test_postprocess_drops_boxes_entirely_in_the_padding() -> None:
    transform = plan_letterbox(1000, 100, INPUT_SIZE)  # image rows 187..229 of the canvas
    in_padding = postprocess(heads_with_object(3, cell=2, half_size_bins=1), transform)  # canvas y 24..56
    assert len(in_padding) == 0
    on_image = postprocess(heads_with_object(3, cell=13, half_size_bins=1), transform)
    assert len(on_image) == 1


def test_detect_batch_batches_good_images_and_keeps_errors_in_place() -> None:
    images = (
        [png_of(640, 480, blue=b) for b in (0, 40, 80)] + [b"junk"] + [png_of(300, 500, blue=b) for b in (120, 160)]
    )
    network = ColourCodedNetwork()
    results = detect_batch(images, network, [Thresholds()] * len(images), max_batch=2)
    assert network.batch_sizes == [2, 2, 1]
    assert isinstance(results[3], DecodeError)
    class_ids = [r.class_ids.tolist() for r in results if isinstance(r, ObjectDetections)]
    assert class_ids == [[0], [10], [20], [30], [40]]


def test_detect_batch_uses_each_images_own_thresholds() -> None:
    images = [png_of(640, 480)] * 3
    strict, loose = Thresholds(score=0.95), Thresholds(score=0.1)
    results = detect_batch(images, ColourCodedNetwork(), [loose, strict, loose])
    assert [len(r) for r in results if isinstance(r, ObjectDetections)] == [1, 0, 1]
    with pytest.raises(ValueError, match="3 images but 1 thresholds"):
        detect_batch(images, ColourCodedNetwork(), [loose])


def test_detect_batch_without_good_images_does_not_call_the_network() -> None:
    network = ColourCodedNetwork()
    results = detect_batch([b"", b"text"], network, [Thresholds()] * 2)
    assert network.batch_sizes == [] and all(isinstance(r, DecodeError) for r in results)


def random_detections(count: int, seed: int = 0) -> ObjectDetections:
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 500, (count, 2)).astype(np.float32)
    boxes = np.concatenate([corner, corner + 10], axis=1)
    return ObjectDetections(
        boxes,
        np.sort(rng.uniform(0, 1, count).astype(np.float32))[::-1].copy(),
        rng.integers(0, 80, count).astype(np.int32),
    )


@pytest.mark.parametrize("count", [0, 1, 37, 100])
def test_padding_round_trips(count: int) -> None:
    detections = random_detections(count)
    padded = pad_detections(detections)
    assert padded["NUM_DETECTIONS"].tolist() == [count]
    assert (
        padded["BOXES"].shape == (100, 4) and padded["SCORES"].shape == (100,) and padded["CLASS_IDS"].shape == (100,)
    )
    assert (padded["CLASS_IDS"][count:] == -1).all() and (padded["BOXES"][count:] == 0).all()
    back = unpad_detections(count, padded["BOXES"], padded["SCORES"], padded["CLASS_IDS"])
    for name in ("boxes", "scores", "class_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(detections, name))


def test_padding_truncates_to_the_size_and_unpadding_checks_the_count() -> None:
    padded = pad_detections(random_detections(120), size=100)
    assert padded["NUM_DETECTIONS"].tolist() == [100]
    with pytest.raises(ValueError, match="NUM_DETECTIONS 101"):
        unpad_detections(101, padded["BOXES"], padded["SCORES"], padded["CLASS_IDS"])


@pytest.mark.parametrize(
    ("boxes", "scores", "class_ids"),
    [
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2)),
        (np.zeros((2, 5)), np.zeros(2), np.zeros(2)),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(1)),
        (np.zeros((2, 4)), np.zeros((2, 1)), np.zeros(2)),
    ],
)
def test_inconsistent_detections_are_refused(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> None:
    with pytest.raises(ValueError, match="inconsistent detections"):
        ObjectDetections(boxes, scores, class_ids)
