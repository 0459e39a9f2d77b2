"""processors.classifier: preprocessing, the argmax, batching around any ``infer`` function,
and the training augmentation (deterministic per seed, valid images out)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from processors.classifier import (
    INPUT_SIZE,
    MAX_BATCH,
    Augmentation,
    Classification,
    classify_batch,
    preprocess,
    to_classification,
    to_input_tensor,
)
from processors.decode import DecodeError
from processors.nanodet import MEAN_BGR, STD_BGR

LABELS = ("ok", "defect")


def png_of(width: int, height: int, grey: int = 120) -> bytes:
    return cv2.imencode(".png", np.full((height, width), grey, np.uint8))[1].tobytes()


def test_input_tensor_is_resized_normalised_chw() -> None:
    image = np.full((300, 300, 3), (10, 20, 30), np.uint8)
    tensor = to_input_tensor(image)
    assert tensor.shape == (3, INPUT_SIZE, INPUT_SIZE) and tensor.dtype == np.float32
    expected = (np.array([10, 20, 30], np.float32) - MEAN_BGR) / STD_BGR
    np.testing.assert_allclose(tensor[:, 5, 7], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("image", "message"),
    [(np.zeros((8, 8), np.uint8), "uint8 \\[h,w,3\\]"), (np.zeros((8, 8, 3), np.float32), "float32")],
)
def test_input_tensor_refuses_other_arrays(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_input_tensor(image)


def test_grey_png_becomes_three_equal_channels() -> None:
    tensor = preprocess(png_of(300, 300, grey=200))
    pixels = tensor * STD_BGR[:, None, None] + MEAN_BGR[:, None, None]
    np.testing.assert_allclose(pixels, 200.0, atol=1e-3)


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        ([0.9, 0.1], Classification(0, "ok", 0.9, (0.9, 0.1))),
        ([0.25, 0.75], Classification(1, "defect", 0.75, (0.25, 0.75))),
    ],
)
def test_to_classification_takes_the_argmax(probabilities: list[float], expected: Classification) -> None:
    result = to_classification(np.array(probabilities, np.float32), LABELS)
    assert (result.class_id, result.label) == (expected.class_id, expected.label)
    assert result.score == pytest.approx(expected.score)


def test_to_classification_refuses_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="expected 2 probabilities"):
        to_classification(np.array([0.2, 0.3, 0.5]), LABELS)


def test_classify_batch_keeps_order_and_bad_images_in_place() -> None:
    calls: list[int] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape[0])
        mean = batch.mean(axis=(1, 2, 3))  # brighter images -> "defect"
        defect = (mean > 0).astype(np.float32) * 0.6 + 0.2
        return np.stack([1 - defect, defect], axis=1)

    images = [png_of(40, 40, grey=250) for _ in range(MAX_BATCH)] + [b"not an image", png_of(40, 40, grey=0)]
    results = classify_batch(images, infer, LABELS)
    assert calls == [MAX_BATCH, 1]
    assert [r.label if isinstance(r, Classification) else "error" for r in results] == (
        ["defect"] * MAX_BATCH + ["error", "ok"]
    )
    assert isinstance(results[MAX_BATCH], DecodeError)


def test_augmentation_is_deterministic_per_seed_and_changes_the_image() -> None:
    image = np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    augment = Augmentation()
    first = augment.apply(image, np.random.default_rng(7))
    again = augment.apply(image, np.random.default_rng(7))
    other = augment.apply(image, np.random.default_rng(8))
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and not np.array_equal(first, image)


def test_augmentation_off_is_the_identity() -> None:
    image = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    off = Augmentation(flip=0, rotate90=0, max_angle=0, max_brightness=0, max_contrast=0, blur=0, noise_sigma=0)
    np.testing.assert_array_equal(off.apply(image, np.random.default_rng(0)), image)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"flip": 1.5}, "flip must be a probability"), ({"noise_sigma": -1.0}, "noise_sigma must not be negative")],
)
def test_augmentation_refuses_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Augmentation(**settings)
