"""processors.image_stats: brightness and sharpness of a frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framestream.settings import REPO_ROOT
from processors.image_stats import STATS_WIDTH, downscaled_grey, image_stats
from schemas import ImageStats

PHOTO = REPO_ROOT / "tests" / "data" / "photos" / "dog.jpg"


@pytest.mark.parametrize("level", [0, 37, 128, 255])
def test_brightness_of_a_flat_image_is_its_grey_level_and_sharpness_zero(level: int) -> None:
    stats = image_stats(np.full((120, 160, 3), level, np.uint8))
    assert stats.brightness == pytest.approx(level)
    assert stats.sharpness == 0.0


def test_brightness_uses_luma_weights() -> None:
    blue = np.zeros((64, 64, 3), np.uint8)
    blue[:, :, 0] = 255  # BGR: pure blue is dark to the eye
    green = np.zeros((64, 64, 3), np.uint8)
    green[:, :, 1] = 255
    assert image_stats(blue).brightness == pytest.approx(0.114 * 255, abs=1.0)
    assert image_stats(green).brightness == pytest.approx(0.587 * 255, abs=1.0)


def test_blur_lowers_sharpness() -> None:
    photo = cv2.imread(str(PHOTO))
    blurred = cv2.GaussianBlur(photo, (0, 0), sigmaX=4)
    sharp, soft = image_stats(photo), image_stats(blurred)
    assert soft.sharpness < sharp.sharpness / 5
    assert soft.brightness == pytest.approx(sharp.brightness, abs=2.0)


def test_sharpness_is_comparable_across_resolutions() -> None:
    photo = cv2.imread(str(PHOTO))
    doubled = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    small, large = image_stats(photo).sharpness, image_stats(doubled).sharpness
    assert 0.5 < large / small < 2.0


def test_downscale_keeps_aspect_and_never_upscales() -> None:
    assert downscaled_grey(np.zeros((480, 640, 3), np.uint8)).shape == (240, STATS_WIDTH)
    assert downscaled_grey(np.zeros((100, 200), np.uint8)).shape == (100, 200)
    assert downscaled_grey(np.zeros((100, 200, 4), np.uint8)).shape == (100, 200)


def test_results_fit_the_message_schema() -> None:
    rng = np.random.default_rng(0)
    stats = image_stats(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    ImageStats(
        brightness=stats.brightness, sharpness=stats.sharpness, contrast=stats.contrast
    )  # raises if out of bounds


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
    ],
)
def test_bad_images_are_rejected(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_stats(image)


def test_contrast_is_the_spread_of_grey_levels() -> None:
    halves = np.zeros((64, 64), np.uint8)
    halves[:, 32:] = 200  # half black, half grey 200: standard deviation 100
    assert image_stats(halves).contrast == pytest.approx(100.0)
    assert image_stats(np.full((64, 64), 90, np.uint8)).contrast == 0.0
    photo = cv2.imread(str(PHOTO))
    washed_out = cv2.addWeighted(photo, 0.3, np.full_like(photo, 200), 0.7, 0)  # fog: grey veil over the scene
    assert image_stats(washed_out).contrast < image_stats(photo).contrast * 0.4
