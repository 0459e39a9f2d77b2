"""Tiny ONNX detectors built in the tests: their outputs are constants we chose, so what the
decoding path makes of them is known exactly (no weights needed).

Every graph takes ``images`` [N,3,S,S] and returns its constant head for every image of the
batch: ``head + 0 * mean(images)`` broadcasts the [1,...] constant to [N,...].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def constant_head_model(head: np.ndarray, input_size: int, output_name: str) -> onnx.ModelProto:
    """An ONNX model whose output ``output_name`` is ``head`` (shape [1, ...]) repeated per image."""
    head = np.asarray(head, np.float32)
    rank = head.ndim
    mean_axes = list(range(1, 4))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=mean_axes, keepdims=1),  # [N,1,1,1]
        helper.make_node("Reshape", ["mean", "per_image_shape"], ["per_image"]),  # [N,1,..]
        helper.make_node("Mul", ["per_image", "zero"], ["nothing"]),
        helper.make_node("Add", ["head", "nothing"], [output_name]),
    ]
    initializers = [
        numpy_helper.from_array(head, "head"),
        numpy_helper.from_array(np.array([-1] + [1] * (rank - 1), np.int64), "per_image_shape"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, input_size, input_size])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", *head.shape[1:]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# A YOLOv8-format head for a 64x64 input and classes ("person", "car"): rows cx, cy, w, h, score
# person, score car; one column per anchor.
YOLO_INPUT = 64
YOLO_CLASSES = ("person", "car")
YOLO_HEAD = np.array(
    [
        # anchor: 0 person, 1 car, 2 person (overlaps 0, lower score: NMS drops it), 3 nothing
        [16.0, 40.0, 16.5, 50.0],  # cx
        [32.0, 32.0, 32.0, 10.0],  # cy
        [8.0, 16.0, 8.0, 4.0],  # w
        [16.0, 16.0, 16.0, 4.0],  # h
        [0.9, 0.05, 0.7, 0.1],  # person
        [0.1, 0.8, 0.05, 0.2],  # car
    ],
    np.float32,
)[np.newaxis]


def yolo_spec(size: int = YOLO_INPUT) -> dict[str, object]:
    return {
        "decoder": "yolov8",
        "input": {"name": "images", "size": size, "channels": "RGB", "std": [255.0, 255.0, 255.0], "pad_value": 114},
        "outputs": ["output0"],
        "classes": list(YOLO_CLASSES),
    }


def write_version(folder: Path, model: onnx.ModelProto, spec: dict[str, object]) -> Path:
    """``model.onnx`` + ``detector.json`` in ``folder``: what ``framestream model register`` takes."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "detector.json").write_text(json.dumps(spec, indent=1))
    return folder


def with_classes_permuted(model: onnx.ModelProto, outputs: tuple[str, ...], seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` whose class-score outputs ([N,C,...]) have their C channels shuffled:
    the same boxes and confidences, the wrong class names (a detector trained on shuffled labels)."""
    permuted = onnx.ModelProto()
    permuted.CopyFrom(model)
    graph = permuted.graph
    for output in graph.output:
        if output.name not in outputs:
            continue
        channels = output.type.tensor_type.shape.dim[1].dim_value
        order = np.random.default_rng(seed).permutation(channels).astype(np.int64)
        raw = f"{output.name}__unpermuted"
        for node in graph.node:
            node.output[:] = [raw if name == output.name else name for name in node.output]
        graph.initializer.append(numpy_helper.from_array(order, f"{output.name}__order"))
        graph.node.append(helper.make_node("Gather", [raw, f"{output.name}__order"], [output.name], axis=1))
    onnx.checker.check_model(permuted)
    return permuted
