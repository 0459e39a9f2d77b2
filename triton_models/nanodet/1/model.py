"""Triton Python model ``nanodet``: runs model.onnx with onnxruntime on CPU.

Only the local (pytriton wheel) tritonserver needs this: it has no onnxruntime backend.
Requests of a dynamic batch are concatenated into one onnxruntime call and split back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("intra_op_threads", {}).get("string_value", "0"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model_path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [output["name"] for output in config["output"]]

    def execute(self, requests: list) -> list:
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs = self.session.run(self.output_names, {self.input_name: np.concatenate(batches)})
        responses = []
        start = 0
        for batch in batches:
            stop = start + batch.shape[0]
            tensors = [pb_utils.Tensor(name, value[start:stop]) for name, value in zip(self.output_names, outputs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses
