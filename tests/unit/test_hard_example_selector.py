"""The hard-example selector: which frames are kept, for which reasons, and how often per camera."""

from __future__ import annotations

import numpy as np
import pytest

from processors.hard_examples import FrameObservation, HardExampleSelector, pairwise_iou
from schemas.hard_examples import HardExampleReason as R

BOX = (0.0, 0.0, 100.0, 100.0)
FAR = (300.0, 300.0, 400.0, 400.0)
HALF = (0.0, 0.0, 100.0, 50.0)  # IoU 0.5 with BOX


def frame(
    objects: list[tuple[str, float, tuple[float, ...]]],
    t: float = 0.0,
    camera: str = "cam-1",
    **flags: bool,
) -> FrameObservation:
    return FrameObservation(
        camera_id=camera,
        captured_s=t,
        class_names=tuple(name for name, _, _ in objects),
        scores=np.array([score for _, score, _ in objects], dtype=float),
        boxes=np.array([box for _, _, box in objects], dtype=float).reshape(len(objects), 4),
        **flags,
    )


def reasons(selector: HardExampleSelector, observation: FrameObservation) -> set[R]:
    return {selected.reason for selected in selector.update(observation)}


@pytest.mark.parametrize(
    ("objects", "flags", "expected"),
    [
        ([], {}, set()),
        ([("person", 0.9, BOX)], {}, set()),
        ([("person", 0.40, BOX)], {}, {R.UNCERTAIN}),  # 0.05 above the 0.35 threshold
        ([("person", 0.45, BOX)], {}, {R.UNCERTAIN}),  # on the band's edge
        ([("person", 0.46, BOX)], {}, set()),
        ([("person", 0.25, BOX)], {}, {R.UNCERTAIN}),  # below it too (an eval-style low floor)
        ([("dog", 0.9, BOX), ("cat", 0.8, BOX)], {}, {R.CONFUSED}),
        ([("dog", 0.9, BOX), ("cat", 0.8, HALF)], {}, {R.CONFUSED}),  # IoU exactly 0.5
        ([("dog", 0.9, BOX), ("cat", 0.8, FAR)], {}, set()),
        ([("dog", 0.9, BOX), ("dog", 0.8, BOX)], {}, set()),  # same class: not a confusion
        ([("dog", 0.9, BOX), ("cat", 0.40, BOX)], {}, {R.UNCERTAIN, R.CONFUSED}),
        ([("person", 0.9, BOX)], {"drifting": True}, {R.DRIFTING_CAMERA}),
        ([("person", 0.9, BOX)], {"reviewed_false": True}, {R.REVIEWED_FALSE}),
        ([("person", 0.40, BOX)], {"reviewed_false": True}, {R.REVIEWED_FALSE}),  # a revisit: that reason only
    ],
)
def test_reasons_of_one_frame(objects: list, flags: dict, expected: set[R]) -> None:
    assert (
        reasons(HardExampleSelector(0.35, rare_min_history=0, rare_fraction=0.0), frame(objects, **flags)) == expected
    )


def test_rare_class_needs_history_and_counts_per_camera() -> None:
    selector = HardExampleSelector(0.35, rare_fraction=0.1, rare_window=20, rare_min_history=10, min_interval_s=0)
    for t in range(9):
        assert reasons(selector, frame([("person", 0.9, BOX)], t)) == set()
    assert reasons(selector, frame([("horse", 0.9, FAR)], 9)) == set(), "9 detections seen: not enough history"
    assert reasons(selector, frame([("person", 0.9, BOX)], 10)) == set()
    kept = selector.update(frame([("zebra", 0.9, FAR)], 11))
    assert [s.reason for s in kept] == [R.RARE_CLASS] and kept[0].detail.startswith("zebra: 0.0%")
    assert reasons(selector, frame([("horse", 0.9, FAR)], 12)) == {R.RARE_CLASS}, "1 horse in 12: 8.3% < 10%"
    assert reasons(selector, frame([("zebra", 0.9, FAR)], 0, camera="cam-2")) == set(), "another camera's history"


def test_rare_class_window_forgets_old_detections() -> None:
    selector = HardExampleSelector(0.35, rare_fraction=0.2, rare_window=5, rare_min_history=5, min_interval_s=0)
    for t in range(5):
        selector.update(frame([("horse", 0.9, BOX)], t))
    assert reasons(selector, frame([("person", 0.9, BOX)], 5)) == {R.RARE_CLASS}
    for t in range(6, 11):
        selector.update(frame([("person", 0.9, BOX)], t))
    assert reasons(selector, frame([("horse", 0.9, BOX)], 11)) == {R.RARE_CLASS}, "the horses left the window"


def test_rate_limit_per_camera_and_reason_in_capture_time() -> None:
    selector = HardExampleSelector(0.35, min_interval_s=10, rare_min_history=0, rare_fraction=0.0)
    uncertain = [("person", 0.4, BOX)]
    kept = [t for t in np.arange(0, 30, 0.5) if reasons(selector, frame(uncertain, float(t)))]
    assert kept == [0.0, 10.0, 20.0]
    assert reasons(selector, frame(uncertain, 5.0, camera="cam-2")) == {R.UNCERTAIN}, "another camera"
    assert reasons(selector, frame(uncertain, 25.0, drifting=True)) == {R.DRIFTING_CAMERA}, "another reason"
    assert reasons(selector, frame(uncertain, 14.0, reviewed_false=True)) == {R.REVIEWED_FALSE}
    assert reasons(selector, frame(uncertain, 8.0, reviewed_false=True)) == set(), "an older frame, within 10 s"
    assert reasons(selector, frame(uncertain, 3.0, reviewed_false=True)) == {R.REVIEWED_FALSE}


def test_same_input_sequence_same_selection() -> None:
    rng = np.random.default_rng(7)
    names = ["person", "dog", "cat", "horse"]
    frames = [
        frame(
            [
                (
                    str(rng.choice(names, p=[0.85, 0.1, 0.04, 0.01])),
                    float(rng.uniform(0.35, 1.0)),
                    BOX if rng.random() < 0.5 else HALF,
                )
                for _ in range(int(rng.integers(0, 4)))
            ],
            t=i * 0.5,
            camera=f"cam-{i % 3}",
            drifting=bool(rng.random() < 0.1),
        )
        for i in range(300)
    ]

    def run() -> list:
        selector = HardExampleSelector(0.35, min_interval_s=5, rare_window=50, rare_min_history=20, rare_fraction=0.1)
        return [selector.update(f) for f in frames]

    first = run()
    assert first == run()
    assert {s.reason for kept in first for s in kept} >= {R.UNCERTAIN, R.CONFUSED, R.RARE_CLASS, R.DRIFTING_CAMERA}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"uncertain_band": -0.1}, "uncertain_band"),
        ({"confused_iou": 0.0}, "confused_iou"),
        ({"rare_fraction": 1.0}, "rare_fraction"),
        ({"rare_window": 0}, "rare_window"),
        ({"rare_window": 10, "rare_min_history": 11}, "rare_min_history"),
        ({"min_interval_s": -1}, "min_interval_s"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        HardExampleSelector(**{"score_threshold": 0.35, **kwargs})


def test_observation_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="expected 2 scores"):
        FrameObservation("cam-1", 0.0, ("a", "b"), np.array([0.5]), np.zeros((2, 4)))


def test_pairwise_iou() -> None:
    iou = pairwise_iou(np.array([BOX, HALF, FAR, (5, 5, 5, 9)], dtype=float))
    assert iou[0, 1] == pytest.approx(0.5) and iou[0, 2] == 0.0 and iou[3, 3] == 0.0
    assert np.allclose(iou, iou.T)
