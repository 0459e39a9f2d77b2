"""Async gRPC client of a served image classifier (``defects``): encoded bytes in, classes out.

Errors are the detector client's two kinds (streams/inference.py): ``InferenceRejected`` for
a bad image, ``InferenceUnavailable`` for anything that may heal (an untrained model answers
UNAVAILABLE too). Every result names the model version that answered, read from Triton's
response, so an event says which classifier produced it.

Usage::

    async with ClassifierClient("127.0.0.1:8001", "defects") as client:
        served = await client.classify([jpeg_bytes])  # [ServedClassification]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from processors.classifier import MAX_BATCH, Classification
from schemas import FrameClassification
from streams.deadletter import Rejection
from streams.inference import InferenceRejected, InferenceUnavailable, TritonModelClient, classify, retry_transient
from streams.retry import RetryPolicy

OUTPUT_NAMES = ("CLASS_ID", "LABEL", "SCORE", "PROBABILITIES")


@dataclass(frozen=True)
class ServedClassification:
    classification: Classification
    model_name: str
    model_version: str


class ClassifierClient(TritonModelClient):
    """A served classifier model; at most ``max_in_flight`` requests outstanding at once."""

    DEFAULT_MODEL = "defects"

    async def classify(self, images: Sequence[bytes]) -> list[ServedClassification]:
        """The images as rows of requests of at most MAX_BATCH rows; one bad image rejects its request."""
        chunks = [images[start : start + MAX_BATCH] for start in range(0, len(images), MAX_BATCH)]
        results = await asyncio.gather(*(self._request(chunk) for chunk in chunks))
        return [served for chunk in results for served in chunk]

    async def classify_each(self, images: Sequence[bytes]) -> list[ServedClassification | InferenceRejected]:
        """One request per image, so a bad image costs only its own result."""

        async def one(image: bytes) -> ServedClassification | InferenceRejected:
            try:
                return (await self._request([image]))[0]
            except InferenceRejected as rejected:
                return rejected

        return list(await asyncio.gather(*(one(image) for image in images)))

    async def _request(self, images: Sequence[bytes]) -> list[ServedClassification]:
        rows = grpcclient.InferInput("IMAGE", [len(images), 1], "BYTES")
        rows.set_data_from_numpy(np.array([[bytes(image)] for image in images], dtype=np.object_))
        outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        async with self._semaphore:
            try:
                result = await self._grpc().infer(
                    self.model_name, [rows], outputs=outputs, client_timeout=self.timeout_s
                )
            except InferenceServerException as error:
                raise classify(error) from error
            except (TimeoutError, OSError) as error:
                raise InferenceUnavailable(f"{type(error).__name__}: {error}") from error
        class_ids, labels, scores, probabilities = (result.as_numpy(name) for name in OUTPUT_NAMES)
        version = result.get_response().model_version
        return [
            ServedClassification(
                Classification(
                    class_id=int(class_ids[i, 0]),
                    label=_text(labels[i, 0]),
                    score=float(scores[i, 0]),
                    probabilities=tuple(float(p) for p in probabilities[i]),
                ),
                self.model_name,
                version,
            )
            for i in range(len(images))
        ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClassifyStep:
    """The detect stage's classifier calls: each frame to its camera's classifier model, a batch's
    frames of one model in few requests, retried while Triton is unavailable (never skipped); an
    image Triton refuses becomes that frame's Rejection (found by asking again image by image)."""

    def __init__(
        self,
        url: str,
        retry: RetryPolicy,
        max_in_flight: int = 4,
        timeout_s: float = 30.0,
        tls_ca_file: Path | None = None,
    ) -> None:
        self.url = url
        self.tls_ca_file = tls_ca_file
        self.retry = retry
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.clients: dict[str, ClassifierClient] = {}

    def client(self, model_name: str) -> ClassifierClient:
        if model_name not in self.clients:
            self.clients[model_name] = ClassifierClient(
                self.url, model_name, self.max_in_flight, self.timeout_s, self.tls_ca_file
            )
        return self.clients[model_name]

    async def classify(
        self, frames: Sequence[tuple[int, str, bytes]]
    ) -> dict[int, tuple[FrameClassification | Rejection, float]]:
        """(index, model name, image) in; each index's verdict or rejection out, with the round
        trip (seconds) of the Triton call that answered it."""
        by_model: dict[str, list[tuple[int, bytes]]] = {}
        for index, model_name, image in frames:
            by_model.setdefault(model_name, []).append((index, image))
        outcomes: dict[int, tuple[FrameClassification | Rejection, float]] = {}
        for model_name, items in by_model.items():
            client = self.client(model_name)
            attempt = partial(self._classify_model, client, [image for _, image in items])
            results, seconds = await retry_transient(attempt, what=f"Triton classifier {model_name}", retry=self.retry)
            outcomes.update((index, (result, seconds)) for (index, _), result in zip(items, results, strict=True))
        return outcomes

    @staticmethod
    async def _classify_model(
        client: ClassifierClient, images: list[bytes]
    ) -> tuple[list[FrameClassification | Rejection], float]:
        started = time.perf_counter()
        try:
            served: Sequence[ServedClassification | InferenceRejected] = await client.classify(images)
        except InferenceRejected:
            served = await client.classify_each(images)
        seconds = time.perf_counter() - started
        return [
            Rejection(str(result), type(result).__name__)
            if isinstance(result, InferenceRejected)
            else FrameClassification(
                label=result.classification.label,
                class_id=result.classification.class_id,
                score=min(1.0, max(0.0, result.classification.score)),
                model_name=result.model_name,
                model_version=result.model_version,
            )
            for result in served
        ], seconds

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
