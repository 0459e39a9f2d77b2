"""processors.letterbox: aspect-preserving placement on the canvas and the way back."""

from __future__ import annotations

import numpy as np
import pytest

from processors.letterbox import DEFAULT_PAD_BGR, LetterboxTransform, letterbox, plan_letterbox


def to_canvas(transform: LetterboxTransform, boxes: np.ndarray) -> np.ndarray:
    """The inverse of ``transform.to_original`` (without clipping)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    mapped = np.empty_like(boxes)
    mapped[:, 0::2] = boxes[:, 0::2] * transform.scale_x + transform.pad_x
    mapped[:, 1::2] = boxes[:, 1::2] * transform.scale_y + transform.pad_y
    return mapped


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        # width, height, size -> (resized w, resized h, pad_x, pad_y) or the exception
        (640, 480, 416, (416, 312, 0, 52)),
        (480, 640, 416, (312, 416, 52, 0)),
        (416, 416, 416, (416, 416, 0, 0)),
        (1, 1, 416, (416, 416, 0, 0)),
        (10_000, 1, 416, (416, 1, 0, 207)),  # a strip keeps one row instead of vanishing
        (1, 10_000, 416, (1, 416, 207, 0)),
        (773, 512, 416, (416, 276, 0, 70)),
        (0, 10, 416, ValueError),
        (10, 10, 0, ValueError),
    ],
)
def test_plan(width: int, height: int, size: int, expected: tuple[int, int, int, int] | type[Exception]) -> None:
    if not isinstance(expected, tuple):
        with pytest.raises(expected):
            plan_letterbox(width, height, size)
        return
    plan = plan_letterbox(width, height, size)
    new_w, new_h, pad_x, pad_y = expected
    assert (round(width * plan.scale_x), round(height * plan.scale_y), plan.pad_x, plan.pad_y) == expected
    assert (plan.width, plan.height, plan.size) == (width, height, size)
    assert new_w + 2 * pad_x in (size, size - 1) and new_h + 2 * pad_y in (size, size - 1)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (1, 1), (3000, 7), (416, 416), (100, 50)])
def test_canvas_holds_the_image_and_pads_with_the_pad_colour(width: int, height: int) -> None:
    colour = (10, 200, 30)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour
    canvas, transform = letterbox(image, 416)
    assert canvas.shape == (416, 416, 3) and canvas.dtype == np.uint8
    inside = np.zeros((416, 416), bool)
    new_w, new_h = round(width * transform.scale_x), round(height * transform.scale_y)
    inside[transform.pad_y : transform.pad_y + new_h, transform.pad_x : transform.pad_x + new_w] = True
    assert (canvas[inside] == colour).all()
    assert (canvas[~inside] == DEFAULT_PAD_BGR).all()


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((4, 4, 4), np.uint8)]
)
def test_rejects_anything_but_bgr_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(bad)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (480, 640), (1352, 900), (1, 1), (10_000, 3), (37, 1001)])
def test_boxes_round_trip_to_original_pixels(width: int, height: int) -> None:
    """Property: any box inside the image maps to the canvas and back to itself."""
    transform = plan_letterbox(width, height, 416)
    rng = np.random.default_rng(width * 7 + height)
    corners = rng.uniform(0, 1, (200, 2, 2)) * np.array([width, height])
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).astype(np.float32)
    back = transform.to_original(to_canvas(transform, boxes))
    np.testing.assert_allclose(back, boxes, rtol=1e-5, atol=1e-3 * max(width, height) / 416)


def test_canvas_boxes_map_to_the_right_place_and_are_clipped() -> None:
    transform = plan_letterbox(640, 480, 416)  # scale 0.65, pad_y 52
    canvas_boxes = np.array(
        [
            [0, 52, 416, 364],  # exactly the image area
            [65, 117, 130, 182],  # 100..200 in original pixels
            [-20, 0, 500, 400],  # reaching into the padding and beyond the canvas
            [10, 0, 50, 40],  # entirely in the top padding
        ],
        np.float32,
    )
    expected = np.array([[0, 0, 640, 480], [100, 100, 200, 200], [0, 0, 640, 480], [10 / 0.65, 0, 50 / 0.65, 0]])
    np.testing.assert_allclose(transform.to_original(canvas_boxes), expected, atol=1e-3)


def test_transform_is_frozen() -> None:
    transform = plan_letterbox(640, 480, 416)
    assert isinstance(transform, LetterboxTransform)
    with pytest.raises(AttributeError):
        transform.scale_x = 1.0  # type: ignore[misc]
