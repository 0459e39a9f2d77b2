"""Detector versions served by a real tritonserver (explicit model control) on a copy of triton_models/:
CenterNet-MobileNetV3 (version 2, converted by infra/models/convert_centernet.py) finds the objects
in the test photos, and a YOLOv8-format ONNX graph built in the test, registered as version 3, is
decoded by the served detector into exactly the boxes its constant head says."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framestream.commands.model import TritonControl
from framestream.registry import ModelRegistry
from framestream.services.triton import LocalTriton
from framestream.settings import Settings
from schemas.coco import COCO_CLASSES
from streams.inference import DetectorClient
from tests.integration.test_triton_detector import EXPECTED, iou
from tests.model_graphs import YOLO_HEAD, constant_head_model, write_version, yolo_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "tests" / "data" / "photos"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTriton, ModelRegistry]]:
    folder = tmp_path_factory.mktemp("versions")
    repository = folder / "models"
    ignore = shutil.ignore_patterns("__pycache__", "registry.json")
    for name in ("detector", "nanodet"):
        shutil.copytree(REPO / "triton_models" / name, repository / name, ignore=ignore)
    registry = ModelRegistry(repository)
    head = write_version(folder / "yolo", constant_head_model(YOLO_HEAD, 64, "output0"), yolo_spec())
    assert registry.register("detector", head) == 3
    with LocalTriton(repository, REPO / ".venv-triton", log_file=folder / "tritonserver.log") as triton:
        yield triton, registry


def switch(triton: LocalTriton, registry: ModelRegistry, version: int) -> None:
    registry.set_served("detector", version)
    TritonControl(triton.grpc_url, Settings()).switch("detector", str(version))


def detect(triton: LocalTriton, images: list[bytes]) -> list:
    async def go() -> list:
        async with DetectorClient(triton.grpc_url) as client:
            await client.wait_ready(60)
            return list(await client.detect_many(images))

    return asyncio.run(asyncio.wait_for(go(), 120))


def test_centernet_served_finds_the_photos_objects(served) -> None:
    triton, registry = served
    switch(triton, registry, 2)
    names = sorted(EXPECTED)
    results = detect(triton, [(PHOTOS / name).read_bytes() for name in names])
    found_total = 0
    for name, found in zip(names, results, strict=True):
        assert found.model_version == "2"
        boxes = [(COCO_CLASSES[c], box) for c, box in zip(found.class_ids, found.boxes, strict=True)]
        print(name, [(c, [int(v) for v in b]) for c, b in boxes])
        hits = [
            any(c in classes and iou(box, expected) >= 0.5 for c, box in boxes) for classes, expected in EXPECTED[name]
        ]
        found_total += sum(hits)
    total = sum(len(objects) for objects in EXPECTED.values())
    # CenterNet is weaker than NanoDet on these photos; most objects read off them by eye are found.
    assert found_total >= total - 3, f"{found_total} of {total}"


def test_registered_yolov8_graph_is_decoded_by_the_served_detector(served) -> None:
    triton, registry = served
    switch(triton, registry, 3)
    buffer = io.BytesIO()
    Image.new("RGB", (128, 64), (90, 120, 150)).save(buffer, "JPEG")
    (found,) = detect(triton, [buffer.getvalue()])
    assert found.model_version == "3"
    assert found.class_ids.tolist() == [0, 2]
    np.testing.assert_allclose(found.scores, [0.9, 0.8], rtol=1e-5)
    np.testing.assert_allclose(found.boxes, [[24, 16, 40, 48], [64, 16, 96, 48]], atol=1e-3)
    switch(triton, registry, 1)
    (back,) = detect(triton, [buffer.getvalue()])
    assert back.model_version == "1"


def test_model_list_shows_tritons_state_of_each_version(served, capsys) -> None:
    triton, registry = served
    switch(triton, registry, 1)
    from framestream.cli import main

    assert (
        main(["model", "list", "detector", "--repository", str(registry.repository), "--triton-url", triton.grpc_url])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "detector 1  (served, triton: READY)"
    assert lines[1].startswith("detector 2") and "served" not in lines[1] and "READY" not in lines[1]
    assert lines[2].startswith("detector 3") and "READY" not in lines[2]
