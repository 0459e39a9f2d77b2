"""Triton Python model ``nanodet``: runs model.onnx with onnxruntime (CPU by default).

Only a tritonserver without the onnxruntime backend (the pytriton wheel's) needs this.
Requests of a dynamic batch are concatenated into one onnxruntime call and split back.
Parameter ``providers``: ``cpu`` (default), or e.g. ``tensorrt,cuda,cpu`` with
onnxruntime-gpu installed (infra/gpu/bench.sh): ONNX Runtime's TensorRT (FP16, engine cache
under ``trt_cache_dir``) and CUDA execution providers, first that loads wins. On CPU the
``detector`` model runs this same file in its own process instead (see its model.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})

        def parameter(name: str, default: str) -> str:
            return parameters.get(name, {}).get("string_value", default)

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameter("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        model_path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        device = args.get("model_instance_device_id", "0")
        providers = execution_providers(parameter("providers", "cpu"), device, parameter("trt_cache_dir", ""))
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        print(f"nanodet: ONNX Runtime {ort.__version__}, providers {self.session.get_providers()}", flush=True)
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]

    def execute(self, requests: list) -> list:
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs = self.session.run(self.output_names, {self.input_name: np.concatenate(batches)})
        responses = []
        start = 0
        for batch in batches:
            stop = start + batch.shape[0]
            tensors = [
                pb_utils.Tensor(name, value[start:stop]) for name, value in zip(self.output_names, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses


def execution_providers(names: str, device_id: str, trt_cache_dir: str) -> list:
    """ONNX Runtime providers (with options) for ``cpu``, ``cuda``, ``tensorrt``, in the given order."""
    cache = trt_cache_dir or os.path.join(os.environ.get("TMPDIR", "/tmp"), "framestream-trt-cache")
    known = {
        "cpu": "CPUExecutionProvider",
        "cuda": ("CUDAExecutionProvider", {"device_id": int(device_id)}),
        "tensorrt": (
            "TensorrtExecutionProvider",
            {
                "device_id": int(device_id),
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": cache,
            },
        ),
    }
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise ValueError(f"nanodet parameter providers: unknown {unknown or names!r}; choose from {', '.join(known)}")
    available = set(ort.get_available_providers())
    chosen = [known[name] for name in wanted if _provider_name(known[name]) in available]
    return chosen or ["CPUExecutionProvider"]


def _provider_name(provider: str | tuple[str, dict]) -> str:
    return provider if isinstance(provider, str) else provider[0]
