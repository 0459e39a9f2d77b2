"""Triton Python model ``face_detector``: encoded images in, face boxes out (CenterFace, ONNX Runtime).

Thin on purpose: decoding, resizing, heatmap decoding and NMS are ``processors.faces``
(unit-tested without a server, on the same model.onnx). The repository root must be importable,
as for ``detector``. A row that does not decode fails its request with INVALID_ARG; a failure
of the network fails the batch with UNAVAILABLE (the client retries).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

try:
    from processors.decode import DecodeError
    from processors.faces import (
        DEFAULT_SCORE_THRESHOLD,
        INPUT_NAME,
        OUTPUT_NAMES,
        FaceDetections,
        detect_faces_batch,
        pad_faces,
    )
except ImportError as error:  # pragma: no cover - a deployment mistake, made loud
    raise ImportError(
        f"face_detector model: cannot import framestream processors ({error}); put the repository root on PYTHONPATH"
    ) from error

OUTPUTS = ("NUM_FACES", "BOXES", "SCORES")
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})

        def parameter(name: str, default: str) -> str:
            return parameters.get(name, {}).get("string_value", default)

        self.max_side = int(parameter("max_side", "960"))
        self.max_pixels = int(parameter("max_pixels", "40000000"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameter("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = [PROVIDERS[name.strip()] for name in parameter("providers", "cpu").split(",") if name.strip()]
        available = set(ort.get_available_providers())
        providers = [name for name in wanted if name in available] or ["CPUExecutionProvider"]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        print(f"face_detector: ONNX Runtime {ort.__version__}, providers {self.session.get_providers()}", flush=True)

    def execute(self, requests: list) -> list:
        images: list[bytes] = []
        owners: list[int] = []
        thresholds: list[float] = []
        bad: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                threshold = _score_threshold(json.loads(request.parameters() or "{}"))
            except ValueError as error:
                bad[index] = str(error)
                continue
            rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            images += [bytes(row) for row in rows]
            owners += [index] * len(rows)
            thresholds += [threshold] * len(rows)
        try:
            results = detect_faces_batch(
                images, self._infer, score_thresholds=thresholds, max_side=self.max_side, max_pixels=self.max_pixels
            )
        except Exception as error:  # the network itself failed: not the request's fault
            failure = pb_utils.TritonError(f"face detector failed: {error}", pb_utils.TritonError.UNAVAILABLE)
            return [pb_utils.InferenceResponse(error=failure) for _ in requests]
        responses = []
        for index in range(len(requests)):
            if index in bad:
                responses.append(_invalid(bad[index]))
            else:
                responses.append(_respond([r for r, owner in zip(results, owners, strict=True) if owner == index]))
        return responses

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return dict(zip(OUTPUT_NAMES, outputs, strict=True))


def _score_threshold(parameters: dict) -> float:
    raw = parameters.get("score_threshold", DEFAULT_SCORE_THRESHOLD)
    try:
        value = float(raw) if not isinstance(raw, bool) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"score_threshold must be a number within [0, 1], got {raw!r}")
    return value


def _respond(results: list) -> object:
    for row, result in enumerate(results):
        if isinstance(result, DecodeError):
            prefix = f"image {row} of {len(results)}: " if len(results) > 1 else ""
            return _invalid(prefix + str(result))
    padded = [pad_faces(result) for result in results if isinstance(result, FaceDetections)]
    tensors = [pb_utils.Tensor(name, np.stack([item[name] for item in padded])) for name in OUTPUTS]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def _invalid(message: str) -> object:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
