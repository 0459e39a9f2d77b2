"""Triton Python model for an image classifier (``defects``): encoded images in, classes out.

Thin on purpose: decoding, preprocessing and the argmax live in ``processors/classifier.py``
(unit-tested without a server, and the very code the in-process reference runs). The repository
root must be importable (the local launcher puts it on PYTHONPATH).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    from processors.classifier import INPUT_NAME, OUTPUT_NAME, Classification, classify_batch
    from processors.decode import DEFAULT_MAX_PIXELS, DecodeError
except ImportError as error:  # pragma: no cover - a deployment mistake, made loud
    raise ImportError(
        f"classifier model: cannot import the framestream processors ({error}); put the repository root on PYTHONPATH"
    ) from error


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})

        def parameter(name: str, default: str) -> str:
            return parameters.get(name, {}).get("string_value", default)

        self.name = args["model_name"]
        self.max_pixels = int(parameter("max_pixels", str(DEFAULT_MAX_PIXELS)))
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = None
        self.labels: tuple[str, ...] = ()
        if not path.is_file():
            self.missing = f"{path} is missing: train it with `framestream train classifier --dataset elpv`"
            print(f"{self.name}: {self.missing}", flush=True)
            return
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameter("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.labels = tuple(json.loads(self.session.get_modelmeta().custom_metadata_map["labels"]))
        print(f"{self.name}: labels {list(self.labels)}, ONNX Runtime {ort.__version__}", flush=True)

    def execute(self, requests: list) -> list:
        """All rows of all requests of the dynamic batch go through the network together."""
        if self.session is None:
            error = pb_utils.TritonError(self.missing, pb_utils.TritonError.UNAVAILABLE)
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        images: list[bytes] = []
        owners: list[int] = []
        for index, request in enumerate(requests):
            rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            images += [bytes(row) for row in rows]
            owners += [index] * len(rows)
        results = classify_batch(images, self._infer, self.labels, self.max_pixels)
        return [
            _respond([r for r, owner in zip(results, owners, strict=True) if owner == index])
            for index in range(len(requests))
        ]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]  # type: ignore[union-attr]


def _respond(results: list) -> object:
    """One request's response, or INVALID_ARG naming the first undecodable row."""
    for row, result in enumerate(results):
        if isinstance(result, DecodeError):
            prefix = f"image {row} of {len(results)}: " if len(results) > 1 else ""
            error = pb_utils.TritonError(prefix + str(result), pb_utils.TritonError.INVALID_ARG)
            return pb_utils.InferenceResponse(error=error)
    classes: list[Classification] = results
    tensors = [
        pb_utils.Tensor("CLASS_ID", np.array([[c.class_id] for c in classes], np.int32)),
        pb_utils.Tensor("LABEL", np.array([[c.label.encode()] for c in classes], np.object_)),
        pb_utils.Tensor("SCORE", np.array([[c.score] for c in classes], np.float32)),
        pb_utils.Tensor("PROBABILITIES", np.array([c.probabilities for c in classes], np.float32)),
    ]
    return pb_utils.InferenceResponse(output_tensors=tensors)
