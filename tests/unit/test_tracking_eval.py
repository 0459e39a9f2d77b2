"""Tracking accuracy on the synthetic scene (framestream/bench/tracking.py): real crops of the
bundled photos on known paths, detected by NanoDet in process, tracked by SceneTracker, scored
by motmetrics. Floors below the measured figures (MOTA 0.966, IDF1 0.946, 1 ID switch), exact
crossing counts. ~15 s of CPU."""

from __future__ import annotations

import pytest

from framestream.bench.tracking import default_scene, evaluate, expected_crossings, iou_distances


@pytest.fixture(scope="module")
def result():  # noqa: ANN201 - TrackingResult
    return evaluate()


def test_mota_and_idf1_floors(result) -> None:  # noqa: ANN001
    assert result.mota >= 0.9, result.as_dict()
    assert result.idf1 >= 0.9, result.as_dict()
    assert result.id_switches <= 2, result.as_dict()


def test_line_crossings_are_exact(result) -> None:  # noqa: ANN001
    assert expected_crossings(default_scene()) == {"in": 2, "out": 2}
    assert result.crossings == result.expected_crossings


@pytest.mark.parametrize(
    ("truth", "tracked", "expected"),
    [
        ([[0, 0, 10, 10]], [[0, 0, 10, 10]], [0.0]),
        ([[0, 0, 10, 10]], [[0, 0, 10, 5]], [0.5]),
        ([[0, 0, 10, 10]], [[0, 0, 10, 4]], [float("nan")]),  # IoU 0.4 < 0.5: no match
        ([[0, 0, 10, 10]], [], []),
    ],
)
def test_iou_distances(truth: list, tracked: list, expected: list) -> None:
    got = iou_distances(truth, tracked)
    assert got.shape == (len(truth), len(tracked))
    assert got.ravel().tolist() == pytest.approx(expected, nan_ok=True)
