import numpy as np
import pytest

from processors.annotate import class_colour, draw_detections
from tests.factories import make_detection


def test_draws_box_in_class_colour_and_leaves_input_untouched() -> None:
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    detection = make_detection(class_name="dog", score=0.8, box=(50, 60, 150, 160))
    annotated = draw_detections(image, [detection])
    assert image.sum() == 0
    # The box's bottom edge lies at y=160 between x=50..150, drawn in the class colour.
    assert tuple(annotated[160, 100]) == class_colour(detection.class_id)
    # Far from any box nothing is drawn.
    assert annotated[10, 290].sum() == 0


def test_no_detections_returns_an_equal_copy() -> None:
    image = np.full((20, 20, 3), 7, dtype=np.uint8)
    annotated = draw_detections(image, [])
    assert annotated is not image and np.array_equal(annotated, image)


@pytest.mark.parametrize("shape", [(20, 20), (20, 20, 4)])
def test_rejects_images_that_are_not_bgr(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="BGR"):
        draw_detections(np.zeros(shape, dtype=np.uint8), [])
