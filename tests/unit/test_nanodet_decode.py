"""processors.nanodet: input tensor and the decoding of scores + distance bins into boxes."""

from __future__ import annotations

import numpy as np
import pytest

from processors.nanodet import (
    INPUT_SIZE,
    MEAN_BGR,
    NUM_BINS,
    NUM_CLASSES,
    OUTPUT_NAMES,
    STD_BGR,
    STRIDES,
    decode_outputs,
    expected_distance,
    split_batch,
    to_input_tensor,
)

PEAK = 30.0  # a bin logit this far above the others makes the softmax one-hot to float32 precision


def empty_heads() -> dict[str, np.ndarray]:
    """Heads of one image in which nothing scores above zero."""
    heads = {}
    for stride in STRIDES:
        cells = INPUT_SIZE // stride
        heads[f"scores_s{stride}"] = np.zeros((NUM_CLASSES, cells, cells), np.float32)
        heads[f"bins_s{stride}"] = np.zeros((4 * NUM_BINS, cells, cells), np.float32)
    return heads


def put_object(
    heads: dict[str, np.ndarray],
    stride: int,
    x: int,
    y: int,
    class_id: int,
    score: float,
    sides: tuple[int, int, int, int],
) -> None:
    """Make cell (x, y) of ``stride`` predict ``class_id`` with bins peaked at ``sides`` (l, t, r, b)."""
    heads[f"scores_s{stride}"][class_id, y, x] = score
    for side, bin_index in enumerate(sides):
        heads[f"bins_s{stride}"][side * NUM_BINS : (side + 1) * NUM_BINS, y, x] = 0.0
        heads[f"bins_s{stride}"][side * NUM_BINS + bin_index, y, x] = PEAK


@pytest.mark.parametrize(
    ("stride", "x", "y", "sides", "expected_box"),
    [
        # cell centre ((x + 0.5) * s, (y + 0.5) * s); box = centre -/+ bin index * s
        (8, 0, 0, (0, 0, 0, 0), (4, 4, 4, 4)),
        (8, 10, 20, (1, 2, 3, 4), (84 - 8, 164 - 16, 84 + 24, 164 + 32)),
        (16, 7, 5, (2, 2, 2, 2), (120 - 32, 88 - 32, 120 + 32, 88 + 32)),
        (32, 12, 12, (10, 10, 0, 0), (400 - 320, 400 - 320, 400, 400)),
        (32, 0, 12, (0, 3, 10, 1), (16, 400 - 96, 16 + 320, 400 + 32)),
    ],
)
def test_one_cell_decodes_to_its_box(
    stride: int, x: int, y: int, sides: tuple[int, int, int, int], expected_box: tuple[int, int, int, int]
) -> None:
    heads = empty_heads()
    put_object(heads, stride, x, y, class_id=17, score=0.9, sides=sides)
    candidates = decode_outputs(heads, score_threshold=0.5)
    assert len(candidates) == 1
    np.testing.assert_allclose(candidates.boxes[0], expected_box, atol=1e-3)
    assert candidates.scores[0] == pytest.approx(0.9)
    assert candidates.class_ids[0] == 17
    assert (candidates.boxes.dtype, candidates.scores.dtype, candidates.class_ids.dtype) == (
        np.float32,
        np.float32,
        np.int32,
    )


@pytest.mark.parametrize(
    ("scores", "threshold", "expected_classes"),
    [
        ({3: 0.5}, 0.5, []),  # strictly above the threshold
        ({3: 0.51}, 0.5, [3]),
        ({3: 0.9, 40: 0.6}, 0.5, [3, 40]),  # one cell, two classes: two candidates
        ({3: 0.9, 40: 0.4}, 0.5, [3]),
        ({0: 1e-3}, 0.0, [0]),
    ],
)
def test_every_class_above_the_threshold_is_a_candidate(
    scores: dict[int, float], threshold: float, expected_classes: list[int]
) -> None:
    heads = empty_heads()
    for class_id, score in scores.items():
        put_object(heads, 16, 3, 4, class_id, score, (1, 1, 1, 1))
    candidates = decode_outputs(heads, threshold)
    assert sorted(candidates.class_ids.tolist()) == expected_classes
    assert all(np.array_equal(box, candidates.boxes[0]) for box in candidates.boxes)


def test_candidates_from_all_strides_and_the_cap_keeps_the_best() -> None:
    heads = empty_heads()
    rng = np.random.default_rng(3)
    for stride in STRIDES:
        cells = INPUT_SIZE // stride
        heads[f"scores_s{stride}"][:] = rng.uniform(0, 1, (NUM_CLASSES, cells, cells))
    total = sum(NUM_CLASSES * (INPUT_SIZE // s) ** 2 for s in STRIDES)
    everything = decode_outputs(heads, score_threshold=0.0, max_candidates=total)
    assert len(everything) == total
    capped = decode_outputs(heads, score_threshold=0.0, max_candidates=50)
    assert len(capped) == 50
    assert capped.scores.min() >= np.sort(everything.scores)[-50]


@pytest.mark.parametrize(
    ("logits", "expected"),
    [
        (np.zeros(NUM_BINS), (NUM_BINS - 1) / 2),  # uniform: the middle
        (np.eye(NUM_BINS)[0] * PEAK, 0.0),
        (np.eye(NUM_BINS)[7] * PEAK, 7.0),
        (np.eye(NUM_BINS)[10] * PEAK, 10.0),
        ((np.eye(NUM_BINS)[2] + np.eye(NUM_BINS)[4]) * PEAK, 3.0),  # two equal peaks: halfway
        (np.eye(NUM_BINS)[5] * 1000.0, 5.0),  # huge logits must not overflow
    ],
)
def test_expected_distance_is_the_softmax_mean(logits: np.ndarray, expected: float) -> None:
    bins = np.broadcast_to(logits[np.newaxis, :, np.newaxis], (4, NUM_BINS, 3))
    np.testing.assert_allclose(expected_distance(bins), np.full((4, 3), expected), atol=1e-4)


def test_expected_distance_stays_within_the_bins() -> None:
    rng = np.random.default_rng(0)
    distances = expected_distance(rng.normal(0, 5, (4, NUM_BINS, 1000)))
    assert distances.shape == (4, 1000)
    assert distances.min() >= 0.0 and distances.max() <= NUM_BINS - 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.pop("bins_s16"), "bins_s16 is missing"),
        (lambda h: h.__setitem__("scores_s8", np.zeros((80, 52, 51), np.float32)), "scores_s8 has shape"),
        (lambda h: h.__setitem__("bins_s32", np.zeros((1, 44, 13, 13), np.float32)), "bins_s32 has shape"),
    ],
)
def test_malformed_heads_are_rejected(change: object, message: str) -> None:
    heads = empty_heads()
    change(heads)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        decode_outputs(heads, 0.5)


def test_input_tensor_normalises_bgr_to_chw() -> None:
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    canvas[..., 0], canvas[..., 1], canvas[..., 2] = 10, 120, 250  # B, G, R
    tensor = to_input_tensor(canvas)
    assert tensor.shape == (3, INPUT_SIZE, INPUT_SIZE) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    expected = (np.array([10, 120, 250], np.float32) - MEAN_BGR) / STD_BGR
    np.testing.assert_allclose(tensor[:, 100, 200], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((416, 416, 3), np.float32), np.zeros((320, 320, 3), np.uint8)])
def test_input_tensor_rejects_other_canvases(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="canvas"):
        to_input_tensor(bad)


def test_split_batch_picks_one_image() -> None:
    batched = {name: np.stack([empty_heads()[name], empty_heads()[name] + 1]) for name in OUTPUT_NAMES}
    second = split_batch(batched, 1)
    assert set(second) == set(OUTPUT_NAMES)
    assert all((second[name] == 1).all() and second[name].ndim == 3 for name in OUTPUT_NAMES)
