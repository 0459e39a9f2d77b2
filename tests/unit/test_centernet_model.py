"""The committed CenterNet detector version: the bytes the conversion script records, and its spec
finds the obvious objects in the test photos in process (the served path: integration test
tests/integration/test_detector_versions.py)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from framestream.model_gate import predict
from framestream.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[2]
VERSION = REPO / "triton_models" / "detector" / "2"


def recorded_sha256() -> str:
    script = (REPO / "infra/models/convert_centernet.py").read_text()
    return re.search(r'^EXPECTED_SHA256 = "([0-9a-f]{64})"', script, re.M).group(1)


def test_committed_model_is_the_recorded_conversion_output():
    digest = hashlib.sha256((VERSION / "model.onnx").read_bytes()).hexdigest()
    assert digest == recorded_sha256()
    assert f"`{digest}`" in (VERSION / "PROVENANCE.md").read_text()


def test_centernet_finds_the_dog_the_bicycle_and_the_horses():
    network = ModelRegistry(REPO / "triton_models").network("detector", 2)
    assert network.spec.decoder == "centernet" and network.spec.max_batch == 1
    photos = [(REPO / "tests/data/photos" / name).read_bytes() for name in ("dog.jpg", "horses.jpg")]
    dog, horses = predict(network, photos)
    confident = {box.label for box in dog if box.score >= 0.35}
    assert {"dog", "bicycle"} <= confident
    assert sum(1 for box in horses if box.label == "horse" and box.score >= 0.35) >= 2
