"""The model registry and the promotion gate, on a copy of the model repository (no Triton: without a
URL, promote and rollback only rewrite the repository).

The labelled set is tests/data/labels/photos-detector (NanoDet's own detections, so the served
NanoDet scores mAP 1.0 there). The "deliberately worse candidate" is NanoDet with its 80 class
score channels shuffled (graph surgery, tests/model_graphs.py): the same boxes and confidences
under the wrong names, like a detector trained on shuffled labels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from framestream.cli import main
from framestream.model_gate import LabelledSet, gate
from framestream.registry import ModelRegistry, RegistryError
from processors.decoders import NANODET_SPEC
from tests.model_graphs import YOLO_HEAD, constant_head_model, with_classes_permuted, write_version, yolo_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
LABELS = REPO_ROOT / "tests/data/labels/photos-detector/annotations.json"
NANODET_ONNX = REPO_ROOT / "triton_models/nanodet/1/model.onnx"
SCORES = tuple(name for name in NANODET_SPEC.output_names if name.startswith("scores"))


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "detector" / "1").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "triton_models/detector/config.pbtxt", root / "detector")
    shutil.copy(REPO_ROOT / "triton_models/detector/1/model.py", root / "detector/1")
    (root / "nanodet" / "1").mkdir(parents=True)
    (root / "nanodet/config.pbtxt").write_text('name: "nanodet"\n')
    (root / "nanodet/1/model.onnx").symlink_to(NANODET_ONNX)
    return root


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("candidates")
    nanodet = onnx.load(str(NANODET_ONNX))
    return {
        "shuffled": write_version(folder / "shuffled", with_classes_permuted(nanodet, SCORES), NANODET_SPEC.to_dict()),
        "nanodet": write_version(folder / "nanodet", nanodet, NANODET_SPEC.to_dict()),
    }


def cli(repository: Path, *args: str) -> int:
    return main(["model", *args[:1], *args[1:], "--repository", str(repository), "--triton-url", ""])


def test_register_checks_the_spec_against_the_graph_and_adds_the_next_version(repository, tmp_path, capsys):
    registry = ModelRegistry(repository)
    good = write_version(tmp_path / "yolo", constant_head_model(YOLO_HEAD, 64, "output0"), yolo_spec())
    bad = write_version(
        tmp_path / "bad", constant_head_model(YOLO_HEAD, 64, "output0"), {**yolo_spec(), "outputs": ["out"]}
    )
    assert cli(repository, "register", str(bad)) == 1
    assert "outputs ['out'] are missing" in capsys.readouterr().err
    assert cli(repository, "register", str(good), "--note", "test head") == 0
    assert registry.versions("detector") == [1, 2]
    assert sorted(p.name for p in (repository / "detector/2").iterdir()) == ["detector.json", "model.onnx", "model.py"]
    assert registry.served("detector") == 1  # registering does not serve
    assert registry.log("detector")[-1]["action"] == "register"
    assert cli(repository, "list", "detector") == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["detector 1  (served)", "detector 2"]


def test_gate_refuses_the_shuffled_candidate_and_accepts_the_better(repository, candidates, capsys, monkeypatch):
    monkeypatch.setenv("FRAMESTREAM_EVAL_DATASET", str(LABELS))
    registry = ModelRegistry(repository)
    assert cli(repository, "register", str(candidates["shuffled"])) == 0
    # refused: mAP far below the current model's
    assert cli(repository, "promote", "detector", "2") == 3
    captured = capsys.readouterr()
    assert "gate fails" in captured.out and "refused" in captured.err
    assert registry.served("detector") == 1
    # forcing needs a reason, and records it
    assert cli(repository, "promote", "detector", "2", "--force") == 1
    assert cli(repository, "promote", "detector", "2", "--force", "--reason", "drill") == 0
    forced = registry.log("detector")[-1]
    assert forced["action"] == "promote" and forced["forced"] is True and forced["reason"] == "drill"
    assert forced["gate"]["passed"] is False and forced["from"] == 1
    assert registry.served("detector") == 2
    assert "version_policy: { specific: { versions: [ 2 ] } }" in (repository / "detector/config.pbtxt").read_text()
    # the real NanoDet against the shuffled incumbent: better by far more than the margin
    assert cli(repository, "register", str(candidates["nanodet"])) == 0
    assert cli(repository, "promote", "detector", "3", "--margin", "0.05") == 0
    accepted = registry.log("detector")[-1]
    assert accepted["gate"]["passed"] is True and accepted["gate"]["candidate_score"] > 0.9
    assert accepted["gate"]["current_score"] < 0.2
    assert registry.served("detector") == 3
    # rollbacks walk back the promotions, then stop
    assert cli(repository, "rollback", "detector") == 0
    assert registry.served("detector") == 2
    assert cli(repository, "rollback", "detector") == 0
    assert registry.served("detector") == 1
    assert cli(repository, "rollback", "detector") == 1
    config = (repository / "detector/config.pbtxt").read_text()
    assert config.count("version_policy") == 1 and config.count("# The served version") == 1


def test_gate_figures(repository, candidates):
    registry = ModelRegistry(repository)
    registry.register("detector", candidates["shuffled"])
    result = gate(registry, "detector", 2, LabelledSet.read(LABELS, "coco"), "map50", 0.01)
    assert result.current_score > 0.99 and result.candidate_score < 0.2 and not result.passed
    assert "gate fails" in result.summary()


def test_registry_errors(repository):
    registry = ModelRegistry(repository)
    with pytest.raises(RegistryError, match="no model 'nope'"):
        registry.versions("nope")
    with pytest.raises(RegistryError, match="no version 7"):
        registry.set_served("detector", 7)
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        registry.previous("detector")
    assert json.loads(json.dumps(registry.log("detector"))) == []
