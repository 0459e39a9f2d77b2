"""The defect classifier end to end on real parts: trained on elpv cells (a stratified subset,
features cached under var/), a shuffled-labels control that must fail the same acceptance
test, and the model served by a real tritonserver giving what in-process ONNX Runtime gives."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from framestream.services.triton import LocalTriton
from framestream.training.classifier import TrainingOptions, TrainingResult, beats_baseline, export, train
from framestream.training.datasets import ImageSet, load_dataset, stratified_subset
from framestream.training.onnx_parts import labels_of, read_metadata
from processors.classifier import INPUT_NAME, OUTPUT_NAME, Classification, classify_batch
from streams.classification import ClassifierClient
from streams.inference import InferenceRejected

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SUBSET = 400  # of 2,624 cells: ~30 s of features on 2 cores, cached for reruns
MARGIN = 0.05
OPTIONS = TrainingOptions(copies=1, folds=3, seed=0)


@dataclass(frozen=True)
class Trained:
    images: ImageSet
    result: TrainingResult
    model: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    pytest.importorskip("elpv_dataset", reason="elpv-dataset is installed by scripts/setup.sh")
    images = stratified_subset(load_dataset("elpv"), SUBSET, seed=0)
    result = train(images, OPTIONS, cache_dir=REPO / "var" / "classifier-cache")
    repository = tmp_path_factory.mktemp("models")
    (repository / "defects" / "1").mkdir(parents=True)
    shutil.copy(REPO / "triton_models" / "defects" / "config.pbtxt", repository / "defects")
    shutil.copy(REPO / "triton_models" / "defects" / "1" / "model.py", repository / "defects" / "1")
    model = repository / "defects" / "1" / "model.onnx"
    export(result, model)
    return Trained(images, result, model)


def test_trained_classifier_beats_the_majority_baseline(trained: Trained) -> None:
    report = trained.result.report
    cv = report["cv"]
    print(
        f"held-out accuracy {report['accuracy']:.3f} F1 {report['f1']:.3f}; baseline {report['baseline_accuracy']:.3f}"
        f" / {report['baseline_f1']:.3f}; CV accuracy {cv['accuracy_mean']:.3f} ± {cv['accuracy_std']:.3f},"
        f" F1 {cv['f1_mean']:.3f} ± {cv['f1_std']:.3f}"
    )
    assert beats_baseline(report, MARGIN), report
    assert cv["f1_mean"] - cv["f1_std"] > report["baseline_f1"] + MARGIN  # not one lucky split
    assert sum(map(sum, report["confusion_matrix"])) == report["n_test"]


def test_a_model_that_learned_nothing_fails_the_same_test(trained: Trained) -> None:
    shuffled = train(
        trained.images,
        TrainingOptions(copies=1, folds=3, seed=0, shuffle_labels=True),
        REPO / "var" / "classifier-cache",
    )
    assert not beats_baseline(shuffled.report, MARGIN), shuffled.report


def test_exported_model_carries_its_provenance(trained: Trained) -> None:
    metadata = read_metadata(trained.model)
    assert labels_of(metadata) == ("ok", "defect")
    assert metadata["data_sha256"] == trained.result.report["data_sha256"]
    assert '"accuracy"' in metadata["metrics"] and '"C"' in metadata["params"]


@pytest.fixture(scope="module")
def served(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_file = tmp_path_factory.mktemp("triton-classifier") / "tritonserver.log"
    with LocalTriton(trained.model.parents[2], REPO / ".venv-triton", log_file=log_file) as triton:
        yield triton.grpc_url


def cell_images(images: ImageSet, count: int) -> list[bytes]:
    """Cells of both classes as the camera stage sends them (JPEG), and two as stored (PNG)."""
    chosen = [*np.flatnonzero(images.targets == 0)[: count // 2], *np.flatnonzero(images.targets == 1)[: count // 2]]
    encoded = [
        cv2.imencode(".jpg", cv2.imread(str(images.paths[i])), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
        for i in chosen
    ]
    return encoded + [images.paths[i].read_bytes() for i in chosen[:2]]


def test_served_results_equal_in_process_onnx_runtime(trained: Trained, served: str) -> None:
    images = cell_images(trained.images, 24)
    session = ort.InferenceSession(str(trained.model), providers=["CPUExecutionProvider"])
    labels = labels_of(read_metadata(trained.model))
    local = classify_batch(images, lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0], labels)

    async def serve() -> list:
        async with ClassifierClient(served, "defects") as client:
            return await client.classify(images)

    remote = asyncio.run(serve())
    assert {r.model_version for r in remote} == {"1"} and {r.model_name for r in remote} == {"defects"}
    for mine, theirs in zip(local, remote, strict=True):
        assert isinstance(mine, Classification)
        assert theirs.classification.label == mine.label
        assert theirs.classification.score == pytest.approx(mine.score, abs=1e-5)
        np.testing.assert_allclose(theirs.classification.probabilities, mine.probabilities, atol=1e-5)
    assert {c.label for c in local if isinstance(c, Classification)} == {"ok", "defect"}


def test_served_classifier_rejects_a_bad_image_alone(trained: Trained, served: str) -> None:
    good = cell_images(trained.images, 2)[0]

    async def serve() -> list:
        async with ClassifierClient(served, "defects") as client:
            return await client.classify_each([good, b"not an image"])

    first, second = asyncio.run(serve())
    assert not isinstance(first, InferenceRejected)
    assert isinstance(second, InferenceRejected) and "not a JPEG or PNG" in str(second)
