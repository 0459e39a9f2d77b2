"""The classifier's ONNX model from parts: a backbone cut from a converted network, a linear
head, merged into one graph with its provenance in the metadata.

Usage::

    backbone = cut_backbone(Path("triton_models/nanodet/1/model.onnx"))
    head = linear_head(weights, bias)
    model = merge(backbone, head, {"labels": '["ok", "defect"]'})
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.utils import Extractor

from processors.classifier import INPUT_NAME, OUTPUT_NAME

FEATURES = "features"
# NanoDet's ShuffleNetV2 stages as converted (see triton_models/nanodet/PROVENANCE.md): the
# stride-16 stage's output [N,256,H/16,W/16] and the stride-32 one's [N,512,H/32,W/32], the
# last tensors before the detection neck. Both pooled: fine cracks show in the finer one.
BACKBONE_OUTPUTS = (
    "PartitionedCall/onnx_tf_prefix_Concat_42:0",
    "PartitionedCall/onnx_tf_prefix_Concat_62:0",
)
FEATURE_SIZE = 256 + 512


def cut_backbone(network: Path, outputs: Sequence[str] = BACKBONE_OUTPUTS) -> onnx.ModelProto:
    """The backbone of a converted network: its input (any square size, batch symbolic) to
    ``features`` [N, FEATURE_SIZE], the global average pool of each cut tensor, concatenated."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(network)))
    cut = Extractor(model).extract_model([INPUT_NAME], list(outputs))
    dims = cut.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("batch", None, "height", "width"), strict=True):
        if name is not None:
            dim.Clear()
            dim.dim_param = name
    del cut.graph.value_info[:]  # fixed-size shapes inferred for 416x416 no longer hold
    pooled = []
    for index, name in enumerate(outputs):
        pooled.append(f"pooled_{index}")
        cut.graph.node.append(helper.make_node("GlobalAveragePool", [name], [f"gap_{index}"]))
        cut.graph.node.append(helper.make_node("Flatten", [f"gap_{index}"], [pooled[-1]], axis=1))
    cut.graph.node.append(helper.make_node("Concat", pooled, [FEATURES], axis=1))
    del cut.graph.output[:]
    cut.graph.output.append(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", FEATURE_SIZE]))
    del cut.metadata_props[:]
    onnx.checker.check_model(cut)
    return cut


def linear_head(weights: np.ndarray, bias: np.ndarray, opset_imports: Sequence | None = None) -> onnx.ModelProto:
    """``probabilities = softmax(features @ weights.T + bias)``; weights [C, F], bias [C].

    Written as plain Gemm + Softmax rather than converted by skl2onnx: standard operators
    any runtime (ONNX Runtime, TensorRT) runs, and one dependency fewer."""
    classes, features = weights.shape
    if bias.shape != (classes,):
        raise ValueError(f"bias shape {bias.shape} does not match weights {weights.shape}")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", [FEATURES, "head_weights", "head_bias"], ["logits"], transB=1),
            helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1),
        ],
        "head",
        [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "head_weights"),
            numpy_helper.from_array(bias.astype(np.float32), "head_bias"),
        ],
    )
    opsets = list(opset_imports) if opset_imports is not None else [helper.make_opsetid("", 15)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def fold_standardisation(
    weights: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of a linear model on ``(x - mean) / scale`` rewritten to act on ``x``."""
    folded = weights / scale[np.newaxis, :]
    return folded, bias - folded @ mean


def merge(backbone: onnx.ModelProto, head: onnx.ModelProto, metadata: Mapping[str, str]) -> onnx.ModelProto:
    """One model, ``images`` -> ``probabilities``, with ``metadata`` as its metadata_props."""
    head = helper.make_model(head.graph, opset_imports=backbone.opset_import, ir_version=backbone.ir_version)
    model = onnx.compose.merge_models(backbone, head, io_map=[(FEATURES, FEATURES)])
    model.graph.name = "classifier"
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=str(value)))
    onnx.checker.check_model(model)
    return model


def read_metadata(path: Path) -> dict[str, str]:
    """A model's metadata_props (labels, data hash, metrics, parameters), without its weights' use."""
    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def labels_of(metadata: Mapping[str, str]) -> tuple[str, ...]:
    labels = json.loads(metadata.get("labels", "null"))
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"classifier metadata 'labels' must be a JSON list of names, got {metadata.get('labels')!r}")
    return tuple(labels)
