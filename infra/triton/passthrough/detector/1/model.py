"""Triton Python model ``detector`` (NULL variant): the served detector's contract, no work.

Answers every image row with zero detections (NUM_DETECTIONS 0, boxes and scores 0, class
ids -1), without decoding it. Rows that do not even start like a JPEG or PNG, and bad
``score_threshold``/``iou_threshold`` parameters, fail their request with INVALID_ARG as the
real detector's would, so the stream code sees the same behaviour. Benchmarks only
(``framestream bench passthrough``); see ../config.pbtxt.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from processors.detector import MAX_DETECTIONS, thresholds_from_parameters

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class TritonPythonModel:
    def execute(self, requests: list) -> list:
        return [self._answer(request) for request in requests]

    def _answer(self, request: object) -> object:
        try:
            thresholds_from_parameters(json.loads(request.parameters() or "{}"))
        except ValueError as error:
            return _invalid(str(error))
        rows = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
        for row, image in enumerate(rows):
            if not bytes(image[:8]).startswith(IMAGE_MAGIC):
                prefix = f"image {row} of {len(rows)}: " if len(rows) > 1 else ""
                return _invalid(f"{prefix}not a JPEG or PNG image ({len(image)} bytes)")
        count = len(rows)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("NUM_DETECTIONS", np.zeros((count, 1), np.int32)),
                pb_utils.Tensor("BOXES", np.zeros((count, MAX_DETECTIONS, 4), np.float32)),
                pb_utils.Tensor("SCORES", np.zeros((count, MAX_DETECTIONS), np.float32)),
                pb_utils.Tensor("CLASS_IDS", np.full((count, MAX_DETECTIONS), -1, np.int32)),
            ]
        )


def _invalid(message: str) -> object:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
