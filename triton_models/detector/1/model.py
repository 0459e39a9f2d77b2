"""Triton Python (BLS) model ``detector``: encoded images in, detections out.

Thin on purpose: it only adapts Triton's request/response API. Decoding, letterboxing,
bin decoding, NMS and box mapping live in ``processors/`` (unit-tested without a server).
The repository root must be importable: the local launcher puts it on PYTHONPATH, the
container mounts the repository and sets PYTHONPATH likewise.

The network: a BLS call to the ``nanodet`` model (its ONNX Runtime/TensorRT backend on a
GPU), or, when that model is itself only the Python wrapper of ONNX Runtime on the CPU (the
local tritonserver has no ONNX Runtime backend), the same ``model.onnx`` run here, in this
process: the BLS hop would cost a second Python process, a copy of every batch's input
(2 MB per image) and outputs (1.4 MB) through shared memory, and a stage that cannot overlap
with this one. Parameter ``network``: ``auto`` (that rule; the default), ``bls`` or
``onnxruntime``; ``intra_op_threads`` for the in-process session: ``auto`` gives every
instance all the cores this process may use, threads that sleep rather than spin when idle
(a lone request gets every core; instances busy at once share the cores without burning
them spinning), or a number.

A version folder that holds a ``detector.json`` (processors/decoders.py) and a ``model.onnx``
is a self-contained detector, the way ``framestream model register`` adds one: that network
runs in this process with the spec's input and decoder, and ``nanodet`` is not used. Every
version folder carries its own copy of this file (a registered version is an immutable
snapshot of network, spec and serving code).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    from processors.decode import DEFAULT_MAX_PIXELS, DecodeError
    from processors.decoders import NANODET_SPEC, SPEC_FILE, load_spec
    from processors.detector import (
        ObjectDetections,
        Thresholds,
        detect_batch,
        pad_detections,
        thresholds_from_parameters,
    )
    from processors.nanodet import INPUT_NAME, OUTPUT_NAMES
except ImportError as error:  # pragma: no cover - a deployment mistake, made loud
    raise ImportError(
        f"detector model: cannot import the framestream processors ({error}); put the repository root on PYTHONPATH"
    ) from error

OUTPUTS = ("NUM_DETECTIONS", "BOXES", "SCORES", "CLASS_IDS")


class NanodetFailed(RuntimeError):
    """The BLS call to the network failed: not the request's fault, so not INVALID_ARG."""


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})

        def parameter(name: str, default: str) -> str:
            return parameters.get(name, {}).get("string_value", default)

        self.max_pixels = int(parameter("max_pixels", str(DEFAULT_MAX_PIXELS)))
        self.nanodet_model = parameter("nanodet_model", "nanodet")
        network_dir = Path(args["model_repository"]).parent / self.nanodet_model
        version_dir = Path(args["model_repository"]) / str(args.get("model_version", "1"))
        self.spec = NANODET_SPEC
        self.session = None
        if (version_dir / SPEC_FILE).is_file():
            self.spec = load_spec(version_dir / SPEC_FILE)
            threads = _threads(parameter("intra_op_threads", "auto"))
            self.session = _onnxruntime_session(version_dir / "model.onnx", threads)
            self._infer = self._infer_here  # type: ignore[method-assign]
        elif _runs_here(parameter("network", "auto"), network_dir):
            threads = _threads(parameter("intra_op_threads", "auto"))
            self.session = _onnxruntime_session(network_dir / "1" / "model.onnx", threads)
            self._infer = self._infer_here  # type: ignore[method-assign]
        where = "in this process (ONNX Runtime)" if self.session is not None else f"over BLS ({self.nanodet_model})"
        where += f", decoder {self.spec.decoder}"
        print(f"detector: the network runs {where}", flush=True)  # into tritonserver's log

    def execute(self, requests: list) -> list:
        """All rows of all requests of the dynamic batch go to ``nanodet`` together."""
        images: list[bytes] = []
        owners: list[int] = []
        thresholds: list[Thresholds] = []
        bad_parameters: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                wanted = thresholds_from_parameters(json.loads(request.parameters() or "{}"))
            except ValueError as error:
                bad_parameters[index] = str(error)
                continue
            rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            images += [bytes(row) for row in rows]
            owners += [index] * len(rows)
            thresholds += [wanted] * len(rows)
        try:
            results = detect_batch(images, self._infer, thresholds, self.max_pixels, spec=self.spec)
        except NanodetFailed as error:
            failure = pb_utils.TritonError(f"detector network failed: {error}", pb_utils.TritonError.UNAVAILABLE)
            return [pb_utils.InferenceResponse(error=failure) for _ in requests]
        responses = []
        for index in range(len(requests)):
            if index in bad_parameters:
                responses.append(_invalid(bad_parameters[index]))
            else:
                responses.append(_respond([r for r, owner in zip(results, owners, strict=True) if owner == index]))
        return responses

    def _infer_here(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        names = list(self.spec.output_names)
        outputs = self.session.run(names, {self.spec.input_name: batch})  # type: ignore[union-attr]
        return dict(zip(names, outputs, strict=True))

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=self.nanodet_model,
            requested_output_names=list(OUTPUT_NAMES),
            inputs=[pb_utils.Tensor(INPUT_NAME, batch)],
        )
        response = request.exec()
        if response.has_error():
            raise NanodetFailed(response.error().message())
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in OUTPUT_NAMES}


def _runs_here(network: str, network_dir: Path) -> bool:
    """``auto``: here when the network's own model would only run the same ONNX file with ONNX Runtime
    on the CPU in a Python model (backend "python", CPU instances, a model.onnx), over BLS otherwise."""
    if network not in ("auto", "bls", "onnxruntime"):
        raise ValueError(f"detector parameter network must be auto, bls or onnxruntime, got {network!r}")
    if network != "auto":
        return network == "onnxruntime"
    config = network_dir / "config.pbtxt"
    text = re.sub(r"#.*", "", config.read_text()) if config.is_file() else ""  # settings, not comments
    python = re.search(r'^\s*backend:\s*"python"', text, re.M) is not None
    on_gpu = "KIND_GPU" in text or re.search(r'providers".*?string_value:\s*"[^"]*(cuda|tensorrt)', text, re.S)
    return python and not on_gpu and (network_dir / "1" / "model.onnx").is_file()


def _threads(setting: str) -> int:
    """``auto``: every core this process may use. Measured on 2 cores, 2 instances (framestream bench
    detector, served / in-process ONNX Runtime at concurrency 1/2/4/8): one thread per instance
    0.61/0.76/0.92/0.81, two 0.87/0.93/0.95/0.89 -- at concurrency 1 only one instance is busy, and
    with one thread it left the other core idle. The threads sleep when idle (no spinning), so
    instances busy at once share the cores instead of burning them."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores)


def _onnxruntime_session(path: Path, intra_op_threads: int) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Threads that wait by sleeping, not spinning: several instances share the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _respond(results: list) -> object:
    """One request's response, or INVALID_ARG naming the first undecodable row."""
    for row, result in enumerate(results):
        if isinstance(result, DecodeError):
            prefix = f"image {row} of {len(results)}: " if len(results) > 1 else ""
            return _invalid(prefix + str(result))
    padded = [pad_detections(result) for result in results if isinstance(result, ObjectDetections)]
    tensors = [pb_utils.Tensor(name, np.stack([item[name] for item in padded])) for name in OUTPUTS]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def _invalid(message: str) -> object:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
