"""Fuzzing the detector model's request handling, in-process: what ``triton_models/detector/1/
model.py`` does with one request, from ``processors.detector`` (the model file is thin). Any
request parameters give thresholds or a ``ValueError`` naming the parameter (INVALID_ARG);
any image rows give, row by row, detections or a ``DecodeError`` (INVALID_ARG naming the
row); what comes out always fits the model's fixed-size outputs. The network is replaced by
random outputs of its real shapes (it is not an input boundary); the served model gets a
few malformed requests in tests/integration/test_detector_malformed_requests.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.decode import DecodeError
from processors.detector import (
    MAX_DETECTIONS,
    Thresholds,
    detect_batch,
    pad_detections,
    thresholds_from_parameters,
)
from processors.nanodet import INPUT_SIZE, NUM_BINS, NUM_CLASSES, NUM_SIDES, STRIDES
from tests.fuzz.strategies import FUZZ, JSON_VALUES, mutated, tally
from tests.fuzz.test_fuzz_image_decoding import SEEDS

pytestmark = pytest.mark.fuzz

# What Triton can put in a request's parameters: bool, int64, double and string values.
PARAMETER_VALUES = st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20)
PARAMETERS = st.dictionaries(
    st.sampled_from(["score_threshold", "iou_threshold"]) | st.text(max_size=12), PARAMETER_VALUES, max_size=4
)
ROWS = st.lists(st.one_of(st.binary(max_size=300), mutated(st.sampled_from(SEEDS))), min_size=1, max_size=4)


def random_network(seed: int):  # noqa: ANN201 - an InferFn
    rng = np.random.default_rng(seed)

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        assert batch.shape[1:] == (3, INPUT_SIZE, INPUT_SIZE) and batch.dtype == np.float32
        outputs = {}
        for stride in STRIDES:
            cells = INPUT_SIZE // stride
            outputs[f"scores_s{stride}"] = rng.random((len(batch), NUM_CLASSES, cells, cells), dtype=np.float32) ** 8
            outputs[f"bins_s{stride}"] = rng.normal(0, 3, (len(batch), NUM_SIDES * NUM_BINS, cells, cells)).astype(
                np.float32
            )
        return outputs

    return infer


def handle_request(parameters: str, rows: list[bytes], seed: int) -> str | list[dict[str, np.ndarray] | str]:
    """model.py's ``execute`` for one request: an INVALID_ARG message, or per row padded outputs or its error."""
    try:
        wanted = thresholds_from_parameters(json.loads(parameters or "{}"))
    except ValueError as error:
        return f"INVALID_ARG {error}"
    results = detect_batch(rows, random_network(seed), [wanted] * len(rows))
    return [str(result) if isinstance(result, DecodeError) else pad_detections(result) for result in results]


@FUZZ
@given(parameters=PARAMETERS, rows=ROWS, seed=st.integers(0, 2**32 - 1))
def test_detector_requests_get_detections_or_invalid_arg(parameters: dict, rows: list[bytes], seed: int) -> None:
    tally()
    outcome = handle_request(json.dumps(parameters), rows, seed)
    if isinstance(outcome, str):
        assert outcome.startswith("INVALID_ARG ") and len(outcome) > len("INVALID_ARG ")
        return
    assert len(outcome) == len(rows)
    for row in outcome:
        if isinstance(row, str):
            assert row, "a DecodeError says why"
            continue
        assert row["BOXES"].shape == (MAX_DETECTIONS, 4) and np.isfinite(row["BOXES"]).all()
        assert row["SCORES"].shape == (MAX_DETECTIONS,) and ((row["SCORES"] >= 0) & (row["SCORES"] <= 1)).all()


@FUZZ
@given(parameters=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4))
def test_threshold_parameters_are_thresholds_or_value_error(parameters: dict) -> None:
    tally()
    try:
        thresholds = thresholds_from_parameters(parameters)
    except ValueError as error:
        assert "threshold" in str(error)
        return
    assert isinstance(thresholds, Thresholds) and 0 <= thresholds.score <= 1 and 0 <= thresholds.iou <= 1


def test_random_network_outputs_decode() -> None:
    """The stand-in network is realistic enough to yield detections (else the fuzz checks little)."""
    outcome = handle_request("{}", [SEEDS[0]] * 2, seed=1)
    assert isinstance(outcome, list) and all(not isinstance(row, str) for row in outcome)
    assert sum(int(row["NUM_DETECTIONS"][0]) for row in outcome) > 0  # type: ignore[index]
