"""Pluggable decoders: the Ultralytics YOLOv8 layout and CenterNet's decoded boxes, each on an ONNX
graph built here with known outputs, run by ONNX Runtime through the same ``detect_batch`` the
served detector runs."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from processors.decoders import NANODET_SPEC, SpecError, load_spec, spec_from_dict
from processors.detector import Thresholds, detect_batch
from tests.model_graphs import YOLO_HEAD, constant_head_model, write_version, yolo_spec


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buffer, "JPEG")
    return buffer.getvalue()


def run_graph(model, spec, images: list[bytes], score: float = 0.35):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        names = list(spec.output_names)
        return dict(zip(names, session.run(names, {spec.input_name: batch}), strict=True))

    return detect_batch(images, infer, [Thresholds(score, 0.5)] * len(images), spec=spec)


def test_yolov8_head_decoded_letterbox_undone_and_nms_applied(tmp_path):
    spec = load_spec(write_version(tmp_path, constant_head_model(YOLO_HEAD, 64, "output0"), yolo_spec()))
    model = constant_head_model(YOLO_HEAD, 64, "output0")
    # 128x64 image on a 64 canvas: scale 0.5, 16 px of padding above and below.
    found = run_graph(model, spec, [jpeg(128, 64), jpeg(128, 64)])
    assert len(found) == 2
    for detections in found:
        assert detections.class_ids.tolist() == [0, 2]  # COCO person, COCO car (network's 0 and 1)
        np.testing.assert_allclose(detections.scores, [0.9, 0.8], rtol=1e-6)
        # person: canvas (12, 24, 20, 40) -> original ((12-0)/0.5, (24-16)/0.5, ...)
        np.testing.assert_allclose(detections.boxes, [[24, 16, 40, 48], [64, 16, 96, 48]], atol=1e-4)


def test_yolov8_score_threshold_admits_the_weaker_classes():
    spec = spec_from_dict(yolo_spec())
    found = run_graph(constant_head_model(YOLO_HEAD, 64, "output0"), spec, [jpeg(64, 64)], score=0.15)[0]
    # anchor 3 proposes a car at 0.2; anchor 2's person (0.7) still loses to anchor 0 in NMS
    assert sorted((int(c), round(float(s), 2)) for c, s in zip(found.class_ids, found.scores, strict=True)) == [
        (0, 0.9),
        (2, 0.2),
        (2, 0.8),
    ]


def test_yolov8_wrong_class_count_is_refused():
    spec = spec_from_dict({**yolo_spec(), "classes": ["person"]})
    with pytest.raises(ValueError, match=r"\[4\+1, anchors\]"):
        run_graph(constant_head_model(YOLO_HEAD, 64, "output0"), spec, [jpeg(64, 64)])


def test_centernet_boxes_normalized_and_stretched():
    rows = np.array(
        [
            [0.25, 0.25, 0.5, 0.75, 0.9, 16],  # dog
            [0.0, 0.0, 0.1, 0.1, 0.2, 0],  # below threshold
            [0.1, 0.1, 0.2, 0.2, 0.8, 95],  # class outside the list: dropped
        ],
        np.float32,
    )[np.newaxis]
    spec = spec_from_dict(
        {
            "decoder": "centernet",
            "input": {"name": "images", "size": 32, "std": [255, 255, 255], "resize": "stretch"},
            "outputs": ["detections"],
            "box_units": "normalized",
        }
    )
    found = run_graph(constant_head_model(rows, 32, "detections"), spec, [jpeg(200, 100)])[0]
    assert found.class_ids.tolist() == [16]
    np.testing.assert_allclose(found.boxes, [[50, 25, 100, 75]], atol=1e-3)


def test_nanodet_spec_matches_the_nanodet_contract():
    assert NANODET_SPEC.decoder == "nanodet" and NANODET_SPEC.input_size == 416
    assert spec_from_dict(NANODET_SPEC.to_dict()) == NANODET_SPEC


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decoder": "ssd"}, "decoder must be one of"),
        ({"classes": ["person", "unicorn"]}, "not COCO class names"),
        ({"outputs": []}, "output_names is empty"),
        ({"input": {"name": "images"}}, "malformed field 'size'"),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(change, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({**yolo_spec(), **change})
