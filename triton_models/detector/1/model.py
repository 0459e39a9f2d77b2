"""Triton Python (BLS) model ``detector``: encoded images in, detections out.

Thin on purpose: it only adapts Triton's request/response API. Decoding, letterboxing,
bin decoding, NMS and box mapping live in ``processors/`` (unit-tested without a server).
The repository root must be importable: the local launcher puts it on PYTHONPATH, the
container mounts the repository and sets PYTHONPATH likewise.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

try:
    from processors.decode import DEFAULT_MAX_PIXELS, DecodeError
    from processors.detector import (
        ObjectDetections,
        Thresholds,
        detect_batch,
        pad_detections,
        thresholds_from_parameters,
    )
    from processors.nanodet import INPUT_NAME, OUTPUT_NAMES
except ImportError as error:  # pragma: no cover - a deployment mistake, made loud
    raise ImportError(f"detector model: cannot import the framestream processors ({error}); "
                      "put the repository root on PYTHONPATH") from error

OUTPUTS = ("NUM_DETECTIONS", "BOXES", "SCORES", "CLASS_IDS")


class NanodetFailed(RuntimeError):
    """The BLS call to the network failed: not the request's fault, so not INVALID_ARG."""


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.max_pixels = int(parameters.get("max_pixels", {}).get("string_value", DEFAULT_MAX_PIXELS))
        self.nanodet_model = parameters.get("nanodet_model", {}).get("string_value", "nanodet")

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
            results = detect_batch(images, self._infer, thresholds, self.max_pixels)
        except NanodetFailed as error:
            failure = pb_utils.TritonError(f"detector network failed: {error}", pb_utils.TritonError.UNAVAILABLE)
            return [pb_utils.InferenceResponse(error=failure) for _ in requests]
        responses = []
        for index in range(len(requests)):
            if index in bad_parameters:
                responses.append(_invalid(bad_parameters[index]))
            else:
                responses.append(_respond([r for r, owner in zip(results, owners) if owner == index]))
        return responses

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
