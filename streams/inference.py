"""Async gRPC client of the served ``detector`` pipeline (JPEG/PNG bytes in, detections out).

Used by the detect stage, ``framestream detect`` and the benchmarks. Errors come in two
kinds, and only two, so callers can act on them:

- ``InferenceRejected``: permanent, the image itself is bad (Triton INVALID_ARG: not a
  JPEG/PNG, truncated, too large). Retrying cannot help; it goes to the dead-letter topic.
- ``InferenceUnavailable``: transient (server down or restarting, deadline exceeded,
  overloaded, a model failed). Retry with backoff (``retry_transient``); never skip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self, TypeVar

import numpy as np
import tritonclient.grpc.aio as grpcclient
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from tritonclient.utils import InferenceServerException

from processors.detector import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    ObjectDetections,
    Thresholds,
    unpad_detections,
)
from streams.retry import OnRetry, RetryPolicy, retry_async

log = logging.getLogger(__name__)

T = TypeVar("T")
OUTPUT_NAMES = ("NUM_DETECTIONS", "BOXES", "SCORES", "CLASS_IDS")
# Only a complaint about the request itself is permanent; anything else may heal.
PERMANENT_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT"})
# Retry of calls outside the stream stages (model metadata at start, ``framestream detect``).
TRITON_RETRY = RetryPolicy(initial_s=0.5, max_s=30.0, multiplier=2.0, jitter=0.1)


class DetectorClientSettings(BaseSettings):
    """How a stream worker reaches the served detector (env ``FRAMESTREAM_TRITON_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_TRITON_", extra="forbid")

    url: str = Field("", description="host:port of Triton's gRPC endpoint; empty starts the local tritonserver")
    model_name: str = "detector"
    max_in_flight: int = Field(4, ge=1, le=256, description="concurrent requests per detect worker")
    timeout_s: float = Field(30.0, gt=0)
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.6, ge=0.0, le=1.0)
    tls_ca_file: Path | None = Field(
        None,
        description="PEM CA that signed Triton's gRPC certificate: set, the channel is TLS and verifies the server",
    )


class InferenceRejected(ValueError):
    """Triton refused this image for good (INVALID_ARG); the message is Triton's."""


class InferenceUnavailable(ConnectionError):
    """Triton could not answer now (UNAVAILABLE, deadline, connection refused, overload)."""


def classify(error: InferenceServerException) -> InferenceRejected | InferenceUnavailable:
    """Map a tritonclient error to one of the two kinds above, keeping Triton's message."""
    status = str(error.status() or "")
    message = error.message() or str(error)
    if status in PERMANENT_STATUSES:
        return InferenceRejected(message)
    return InferenceUnavailable(f"{status or 'no status'}: {message}")


def channel_options() -> list[tuple[str, int]]:
    """tritonclient's defaults (unbounded messages, keepalive) plus a short reconnect backoff.

    gRPC's own backoff grows to 120 s, so after a Triton restart a worker could sit idle for
    two minutes; capped at 5 s, the retry loop sees the server back within seconds."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]


def open_grpc_client(url: str, tls_ca_file: Path | None = None) -> grpcclient.InferenceServerClient:
    """The one way a stage opens its gRPC client to Triton: the channel options below, and with
    ``tls_ca_file`` TLS whose server certificate must chain to that CA and name the host in ``url``.
    Call it inside the running event loop, which grpc.aio binds the channel to."""
    if tls_ca_file is None:
        return grpcclient.InferenceServerClient(url, channel_args=channel_options())
    import grpc  # tritonclient's own dependency

    credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca_file).read_bytes())
    return grpcclient.InferenceServerClient(url, channel_args=channel_options(), creds=credentials)


class TritonModelClient:
    """What every stage's client of one Triton model shares: one gRPC channel, opened on first use
    inside the running event loop (``open_grpc_client``), at most ``max_in_flight`` requests at once,
    and closing. Subclasses name their model (``DEFAULT_MODEL``) and add its requests."""

    DEFAULT_MODEL: ClassVar[str]

    def __init__(
        self,
        url: str,
        model_name: str | None = None,
        max_in_flight: int = 4,
        timeout_s: float = 30.0,
        tls_ca_file: Path | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.url = url
        self.model_name = model_name or self.DEFAULT_MODEL
        self.timeout_s = timeout_s
        self.tls_ca_file = tls_ca_file
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._client: grpcclient.InferenceServerClient | None = None

    def _grpc(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            self._client = open_grpc_client(self.url, self.tls_ca_file)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class DetectorClient(TritonModelClient):
    """The served ``detector``; at most ``max_in_flight`` requests outstanding at once."""

    DEFAULT_MODEL = "detector"

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the server and the model are ready; InferenceUnavailable after timeout_s."""
        deadline = time.monotonic() + timeout_s
        last_problem = "not ready"
        while time.monotonic() < deadline:
            try:
                if await self._grpc().is_model_ready(self.model_name, client_timeout=2.0):
                    return
                last_problem = f"model {self.model_name} is not ready"
            except InferenceServerException as error:
                last_problem = str(classify(error))
            await asyncio.sleep(0.25)
        raise InferenceUnavailable(f"Triton at {self.url} not ready after {timeout_s:.0f} s: {last_problem}")

    async def model_version(self) -> str:
        """The highest ready version of the model, e.g. "1"."""
        try:
            metadata = await self._grpc().get_model_metadata(self.model_name, client_timeout=self.timeout_s)
        except InferenceServerException as error:
            raise classify(error) from error
        versions = [str(version) for version in metadata.versions]
        return max(versions, key=lambda v: (len(v), v)) if versions else ""

    async def detect(
        self,
        image: bytes,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    ) -> ObjectDetections:
        """Detections for one encoded image (one request; Triton batches concurrent ones)."""
        return (await self.detect_in_one_request([image], score_threshold, iou_threshold))[0]

    async def detect_in_one_request(
        self,
        images: Sequence[bytes],
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    ) -> list[ObjectDetections]:
        """Several images as the rows of a single request (at most 16): one bad image
        rejects the whole request, so prefer ``detect_many`` for untrusted input."""
        Thresholds(score_threshold, iou_threshold)  # fail here, not as a server round trip
        rows = grpcclient.InferInput("IMAGE", [len(images), 1], "BYTES")
        rows.set_data_from_numpy(np.array([[bytes(image)] for image in images], dtype=np.object_))
        outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        parameters = {"score_threshold": float(score_threshold), "iou_threshold": float(iou_threshold)}
        async with self._semaphore:
            try:
                result = await self._grpc().infer(
                    self.model_name, [rows], outputs=outputs, parameters=parameters, client_timeout=self.timeout_s
                )
            except InferenceServerException as error:
                raise classify(error) from error
            except (TimeoutError, OSError) as error:
                raise InferenceUnavailable(f"{type(error).__name__}: {error}") from error
        num, boxes, scores, class_ids = (result.as_numpy(name) for name in OUTPUT_NAMES)
        # The version that answered: during a promotion, requests naming none move to the new one.
        version = str(result.get_response().model_version)
        return [
            replace(unpad_detections(int(num[i, 0]), boxes[i], scores[i], class_ids[i]), model_version=version)
            for i in range(len(images))
        ]

    async def detect_many(
        self,
        images: Sequence[bytes],
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    ) -> list[ObjectDetections | InferenceRejected]:
        """One request per image, concurrently (bounded by max_in_flight), results in order.

        A rejected image yields its InferenceRejected in its place; a transient failure
        cancels the rest and propagates, so the caller retries the whole lot.
        """

        async def one(image: bytes) -> ObjectDetections | InferenceRejected:
            try:
                return await self.detect(image, score_threshold, iou_threshold)
            except InferenceRejected as rejected:
                return rejected

        tasks = [asyncio.ensure_future(one(image)) for image in images]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def is_unavailable(error: Exception) -> bool:
    return isinstance(error, InferenceUnavailable)


async def retry_transient(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str = "Triton request",
    retry: RetryPolicy = TRITON_RETRY,
    on_retry: OnRetry | None = None,
) -> T:
    """Await ``attempt()`` until it succeeds, retrying InferenceUnavailable with ``retry``'s backoff.
    It never gives up on its own: cancel it to stop. Every failed attempt is logged;
    InferenceRejected and other errors propagate at once."""
    return await retry_async(attempt, policy=retry, transient=is_unavailable, what=what, log=log, on_retry=on_retry)
