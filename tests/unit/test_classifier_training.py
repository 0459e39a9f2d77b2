"""framestream.training: elpv labels, data sets, hashing, the ONNX head and its merge with the
backbone, and the acceptance rule against the majority baseline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from framestream.training.classifier import beats_baseline, grouped_folds, head_parameters
from framestream.training.datasets import (
    DatasetError,
    data_hash,
    elpv_class,
    load_dataset,
    stratified_subset,
)
from framestream.training.onnx_parts import FEATURE_SIZE, cut_backbone, linear_head, merge, read_metadata

REPO = Path(__file__).resolve().parents[2]
NANODET = REPO / "triton_models" / "nanodet" / "1" / "model.onnx"


@pytest.mark.parametrize(
    ("probability", "expected"), [(0.0, 0), (1 / 3, 0), (0.3333333333333333, 0), (2 / 3, 1), (1.0, 1)]
)
def test_elpv_probability_to_class(probability: float, expected: int) -> None:
    assert elpv_class(probability) == expected


@pytest.mark.parametrize("probability", [-0.1, 1.5])
def test_elpv_probability_out_of_range_is_refused(probability: float) -> None:
    with pytest.raises(DatasetError, match="within \\[0, 1\\]"):
        elpv_class(probability)


def write_cells(root: Path, rows: list[tuple[str, float]]) -> None:
    (root / "images").mkdir(parents=True)
    for name, probability in rows:
        grey = int(255 * probability)
        cv2.imwrite(str(root / "images" / name), np.full((30, 30), grey, np.uint8))
    lines = [f"images/{name}  {probability:.16f}  mono" for name, probability in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_elpv_layout_folder_reads_and_hashes(tmp_path: Path) -> None:
    write_cells(tmp_path, [("a.png", 0.0), ("b.png", 1.0), ("c.png", 2 / 3), ("d.png", 1 / 3)])
    images = load_dataset(tmp_path)
    assert images.labels == ("ok", "defect")
    assert images.targets.tolist() == [0, 1, 1, 0]
    before = data_hash(images)
    assert before == data_hash(load_dataset(tmp_path))
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((30, 30), 7, np.uint8))
    assert data_hash(load_dataset(tmp_path)) != before  # the bytes are part of the identity


def test_class_folders(tmp_path: Path) -> None:
    for label, count in (("cracked", 2), ("clean", 3)):
        (tmp_path / label).mkdir()
        for index in range(count):
            cv2.imwrite(str(tmp_path / label / f"{index}.png"), np.zeros((8, 8), np.uint8))
    images = load_dataset(tmp_path)
    assert images.labels == ("clean", "cracked")
    assert images.targets.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "no data set"),
        (lambda root: (root / "only").mkdir(parents=True), "at least two class subfolders"),
        (lambda root: (root.mkdir(), (root / "labels.csv").write_text("x.png 0.5\n")), "expected 'path probability"),
        (lambda root: (root.mkdir(), (root / "labels.csv").write_text("x.png high mono\n")), "is not a number"),
    ],
)
def test_bad_data_sets_are_refused(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DatasetError, match=message):
        load_dataset(root)


def test_stratified_subset_keeps_the_proportions(tmp_path: Path) -> None:
    write_cells(tmp_path, [(f"{i}.png", 1.0 if i % 4 == 0 else 0.0) for i in range(40)])
    subset = stratified_subset(load_dataset(tmp_path), 20, seed=3)
    assert np.bincount(subset.targets).tolist() == [15, 5]
    assert subset.paths == stratified_subset(load_dataset(tmp_path), 20, seed=3).paths


def test_folds_keep_copies_together_and_validate_on_originals() -> None:
    originals = 30
    y = np.tile(np.arange(originals) % 2, 3)
    groups = np.tile(np.arange(originals), 3)
    is_original = np.arange(len(y)) < originals
    for train, validate in grouped_folds(y, groups, is_original, folds=3, seed=0):
        assert set(groups[train]).isdisjoint(groups[validate])
        assert is_original[validate].all()


@pytest.mark.parametrize("classes", [2, 3])
def test_onnx_head_reproduces_scikit_learn(classes: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (120, 6))
    y = np.arange(120) % classes
    x[:, 0] += y  # something to learn
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(x, y)
    weights, bias = head_parameters(pipeline)
    head = linear_head(weights, bias)
    head.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 6
    session = ort.InferenceSession(head.SerializeToString(), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"features": x.astype(np.float32)})[0]
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(x), atol=1e-5)


def test_linear_head_refuses_mismatched_bias() -> None:
    with pytest.raises(ValueError, match="bias shape"):
        linear_head(np.zeros((2, 4)), np.zeros(3))


def test_merged_model_classifies_images_and_carries_metadata(tmp_path: Path) -> None:
    backbone = cut_backbone(NANODET)
    weights = np.random.default_rng(0).normal(0, 0.1, (2, FEATURE_SIZE))
    model = merge(backbone, linear_head(weights, np.zeros(2)), {"labels": json.dumps(["ok", "defect"]), "x": "1"})
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    assert read_metadata(path) == {"labels": '["ok", "defect"]', "x": "1"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(1).normal(0, 1, (3, 3, 96, 96)).astype(np.float32)
    probabilities = session.run(["probabilities"], {"images": images})[0]
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    one = session.run(["probabilities"], {"images": images[1:2]})[0]
    np.testing.assert_allclose(one, probabilities[1:2], atol=1e-6)  # batch-independent


@pytest.mark.parametrize(
    ("accuracy", "f1", "expected"),
    [(0.90, 0.85, True), (0.70, 0.60, False), (0.90, 0.42, False), (0.69, 0.40, False)],
)
def test_beats_baseline_needs_both_metrics_ahead(accuracy: float, f1: float, expected: bool) -> None:
    report = {"accuracy": accuracy, "f1": f1, "baseline_accuracy": 0.69, "baseline_f1": 0.41}
    assert beats_baseline(report, margin=0.05) is expected


def test_train_command_refuses_a_missing_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from framestream.cli import main

    assert main(["train", "classifier", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "no data set" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
