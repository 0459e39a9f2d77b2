"""The detect stage sends a micro-batch as few Triton requests and still dead-letters only the bad frame."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from processors.detector import ObjectDetections
from schemas import FrameDetections
from streams.context import WorkerContext, WorkerSettings
from streams.deadletter import Rejection
from streams.detect import DetectStage
from streams.inference import DetectorClientSettings, InferenceRejected, InferenceUnavailable
from streams.metrics import WorkerMetrics
from streams.topics import TopicNames
from tests.factories import make_frame_meta

GOOD, BAD, BROKEN = b"\xff\xd8good", b"\xff\xd8bad", b"\xff\xd8broken"


class FakeDetector:
    """``detect_in_one_request`` as Triton's detector answers it: one bad image fails the request."""

    def __init__(self, unavailable_times: int = 0) -> None:
        self.requests: list[int] = []
        self.unavailable_times = unavailable_times

    async def detect_in_one_request(self, images: Sequence[bytes], score: float, iou: float) -> list[ObjectDetections]:
        self.requests.append(len(images))
        if self.unavailable_times:
            self.unavailable_times -= 1
            raise InferenceUnavailable("StatusCode.UNAVAILABLE: restarting")
        if BAD in images:
            raise InferenceRejected("image 2 of 3: not a JPEG or PNG image")
        if BROKEN in images:
            raise ValueError("NUM_DETECTIONS 101 is outside 0..100")
        return [ObjectDetections.empty() for _ in images]


def stage(rows_per_request: int, client: FakeDetector) -> DetectStage:
    settings = SimpleNamespace(triton=DetectorClientSettings(url="triton:8001", max_in_flight=4), data_dir=Path("."))
    worker = WorkerSettings(detect_rows_per_request=rows_per_request, retry_max_backoff_s=0.01)
    context = WorkerContext(settings, worker, TopicNames(""), WorkerMetrics("w", CollectorRegistry()), "w")  # type: ignore[arg-type]
    detect = DetectStage(context, SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
    detect.client = client  # type: ignore[assignment]
    detect.model_version = "1"
    return detect


def frame_event(image: bytes, seq: int) -> SimpleNamespace:
    message = SimpleNamespace(
        topic="vision.frames.v1",
        partition=0,
        offset=seq,
        key=b"cam-1",
        value=image,
        headers=make_frame_meta("cam-1", seq).to_headers(),
        timestamp=None,
        time_in=None,
        tp=TP("vision.frames.v1", 0),
    )
    return SimpleNamespace(message=message)


@pytest.mark.parametrize(
    ("images", "rows", "requests", "outcomes"),
    [
        ([GOOD] * 8, 16, [8], ["ok"] * 8),
        ([GOOD] * 8, 3, [3, 3, 2], ["ok"] * 8),
        ([GOOD] * 8, 1, [1] * 8, ["ok"] * 8),
        ([GOOD, BAD, GOOD], 16, [3, 1, 1, 1], ["ok", "InferenceRejected", "ok"]),
        ([GOOD, BROKEN], 16, [2, 1, 1], ["ok", "ValueError"]),
    ],
)
def test_a_micro_batch_goes_as_few_requests_and_only_the_bad_frame_is_rejected(
    images: list[bytes], rows: int, requests: list[int], outcomes: list[str]
) -> None:
    client = FakeDetector()
    results = asyncio.run(stage(rows, client).infer_batch([frame_event(image, i) for i, image in enumerate(images)]))
    assert sorted(client.requests, reverse=True) == sorted(requests, reverse=True)
    assert [r.error_type if isinstance(r, Rejection) else "ok" for r in results] == outcomes
    frames = [r for r in results if isinstance(r, FrameDetections)]
    assert [f.frame_seq for f in frames] == [i for i, o in enumerate(outcomes) if o == "ok"], "order kept"
    assert all(f.timings.triton_ms is not None for f in frames)


def test_a_frame_with_bad_headers_is_rejected_without_a_request() -> None:
    client = FakeDetector()
    bad_headers = frame_event(GOOD, 1)
    bad_headers.message.headers = [("fs-camera-id", b"cam 1")]
    results = asyncio.run(stage(16, client).infer_batch([frame_event(GOOD, 0), bad_headers]))
    assert client.requests == [1]
    assert isinstance(results[0], FrameDetections) and results[1].error_type == "ValidationError"  # type: ignore[union-attr]


def test_an_unavailable_triton_is_retried_not_rejected() -> None:
    client = FakeDetector(unavailable_times=2)
    results = asyncio.run(stage(16, client).infer_batch([frame_event(GOOD, i) for i in range(4)]))
    assert client.requests == [4, 4, 4]
    assert all(isinstance(r, FrameDetections) for r in results)
