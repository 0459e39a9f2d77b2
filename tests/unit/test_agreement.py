"""Shadow mode's pure parts: how far a candidate's boxes agree with the served model's, and
which candidate a folder names."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.agreement import LabelledBox, agreement
from processors.decoders import NANODET_SPEC
from streams.shadow import ShadowSettings, load_candidate

REPO = Path(__file__).resolve().parents[2]


def box(name: str, x1: float, y1: float, x2: float, y2: float) -> LabelledBox:
    return LabelledBox(name, x1, y1, x2, y2)


PERSON = box("person", 0, 0, 10, 10)
PERSON_SHIFTED = box("person", 1, 0, 11, 10)  # IoU 9/11 = 0.818 with PERSON
PERSON_FAR = box("person", 6, 0, 16, 10)  # IoU 4/16 = 0.25
DOG_SAME_PLACE = box("dog", 0, 0, 10, 10)
CAR = box("car", 50, 50, 80, 70)


@pytest.mark.parametrize(
    ("current", "candidate", "matched", "precision", "recall"),
    [
        ([], [], 0, 1.0, 1.0),  # two empty frames agree fully
        ([PERSON], [PERSON], 1, 1.0, 1.0),
        ([PERSON], [PERSON_SHIFTED], 1, 1.0, 1.0),
        ([PERSON], [PERSON_FAR], 0, 0.0, 0.0),  # below the IoU threshold
        ([PERSON], [DOG_SAME_PLACE], 0, 0.0, 0.0),  # the same place, another class: no agreement
        ([PERSON, CAR], [PERSON], 1, 1.0, 0.5),  # the candidate misses the car
        ([PERSON], [PERSON, CAR], 1, 0.5, 1.0),  # the candidate adds a car
        ([PERSON], [PERSON_SHIFTED, PERSON], 1, 0.5, 1.0),  # one served box is matched once, by the best IoU
        ([], [CAR], 0, 0.0, 1.0),
        ([CAR], [], 0, 1.0, 0.0),
    ],
)
def test_agreement(
    current: list[LabelledBox], candidate: list[LabelledBox], matched: int, precision: float, recall: float
) -> None:
    result = agreement(current, candidate)
    assert (result.matched, result.precision, result.recall) == (matched, pytest.approx(precision), recall)
    assert result.matched + result.current_only == len(current)
    assert result.matched + result.candidate_only == len(candidate)


def test_the_best_pair_wins_and_its_iou_is_reported() -> None:
    result = agreement([PERSON], [PERSON_SHIFTED, PERSON])
    assert result.mean_iou == pytest.approx(1.0)
    assert agreement([PERSON], [PERSON_SHIFTED]).mean_iou == pytest.approx(9 / 11)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_a_bad_iou_threshold_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        agreement([PERSON], [PERSON], threshold)


def test_a_candidate_folder_with_a_spec_uses_its_decoder_and_one_without_is_nanodet() -> None:
    centernet = load_candidate(ShadowSettings(candidate_dir=REPO / "triton_models" / "detector" / "2"))
    assert (centernet.name, centernet.spec.decoder) == ("detector:2", "centernet")
    nanodet = load_candidate(ShadowSettings(candidate_dir=REPO / "triton_models" / "nanodet" / "1", candidate="nano"))
    assert (nanodet.name, nanodet.spec) == ("nano", NANODET_SPEC)


@pytest.mark.parametrize(
    ("folder", "problem"), [(None, "needs FRAMESTREAM_SHADOW_CANDIDATE_DIR"), (REPO / "samples", "no model.onnx")]
)
def test_a_missing_candidate_stops_the_stage_with_a_clear_error(folder: Path | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        load_candidate(ShadowSettings(candidate_dir=folder))
