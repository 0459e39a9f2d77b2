"""The served ``detector`` pipeline on a real tritonserver: real photos, batching, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from framestream.bench.detector import InProcessDetector
from processors.decode import probe_size
from processors.detector import ObjectDetections
from schemas.coco import COCO_CLASSES
from streams.inference import DetectorClient, InferenceRejected

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "tests" / "data" / "photos"
T = TypeVar("T")

# Objects read off the photos by eye (not from the model): (accepted classes, rough box x1,y1,x2,y2).
# NanoDet calls some of the horses in horses.jpg cows; those two are not listed.
EXPECTED = {
    "dog.jpg": [
        ({"dog"}, (130, 220, 310, 540)),
        ({"bicycle"}, (125, 120, 570, 420)),
        ({"truck", "car"}, (465, 80, 695, 170)),
    ],
    "person.jpg": [
        ({"person"}, (190, 100, 275, 372)),
        ({"horse"}, (405, 140, 605, 345)),
        ({"dog"}, (65, 265, 200, 348)),
    ],
    "horses.jpg": [({"horse"}, (5, 195, 320, 405)), ({"horse"}, (0, 185, 150, 275))],
    "kite.jpg": [
        ({"kite"}, (590, 77, 670, 153)),
        ({"person"}, (213, 697, 273, 857)),
        ({"person"}, (113, 605, 166, 763)),
    ],
}


def run(awaitable: Awaitable[T]) -> T:
    async def with_timeout() -> T:
        return await asyncio.wait_for(awaitable, timeout=120)

    return asyncio.run(with_timeout())


def photo(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def iou(a: np.ndarray, b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_same_detections(a: ObjectDetections, b: ObjectDetections, threshold: float = 0.35) -> None:
    """Same classes and boxes within 1 px, scores within 1e-3. A detection may be missing on one
    side only if its score sits within 0.005 of the threshold (float noise may flip it)."""
    unmatched_b = list(range(len(b)))
    for box, score, class_id in zip(a.boxes, a.scores, a.class_ids, strict=False):
        twins = [j for j in unmatched_b if b.class_ids[j] == class_id and np.abs(b.boxes[j] - box).max() <= 1.0]
        if twins:
            unmatched_b.remove(twins[0])
            assert abs(b.scores[twins[0]] - score) <= 1e-3
        else:
            assert score - threshold < 0.005, f"{COCO_CLASSES[class_id]} {score:.3f} {box} has no twin"
    assert all(b.scores[j] - threshold < 0.005 for j in unmatched_b), f"extra detections {unmatched_b}"


@pytest.fixture(scope="module")
def in_process() -> InProcessDetector:
    return InProcessDetector(REPO / "triton_models" / "nanodet" / "1" / "model.onnx")


def detect_one_by_one(url: str, images: list[bytes], **thresholds: float) -> list[ObjectDetections]:
    async def go() -> list[ObjectDetections]:
        async with DetectorClient(url, max_in_flight=1) as client:
            return [await client.detect(image, **thresholds) for image in images]

    return run(go())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_objects_are_found_with_plausible_boxes(triton_url: str, name: str) -> None:
    detections = detect_one_by_one(triton_url, [photo(name)])[0]
    width, height = probe_size(photo(name))
    assert len(detections) >= len(EXPECTED[name])
    assert (detections.boxes[:, 0] >= 0).all() and (detections.boxes[:, 2] <= width).all()
    assert (detections.boxes[:, 1] >= 0).all() and (detections.boxes[:, 3] <= height).all()
    assert (detections.boxes[:, 2] > detections.boxes[:, 0]).all() and (
        detections.boxes[:, 3] > detections.boxes[:, 1]
    ).all()
    assert (np.diff(detections.scores) <= 0).all() and (detections.scores > 0.35).all()
    names = [COCO_CLASSES[c] for c in detections.class_ids]
    for classes, box in EXPECTED[name]:
        overlaps = [iou(b, box) for b, n in zip(detections.boxes, names, strict=False) if n in classes]
        assert overlaps and max(overlaps) >= 0.5, (
            f"{name}: no {classes} near {box}; got {list(zip(names, detections.boxes.round(), strict=False))}"
        )


def test_several_horses_in_horses_jpg(triton_url: str) -> None:
    detections = detect_one_by_one(triton_url, [photo("horses.jpg")])[0]
    names = [COCO_CLASSES[c] for c in detections.class_ids]
    assert names.count("horse") >= 2
    assert sum(n in {"horse", "cow"} for n in names) >= 4  # five horses; NanoDet says cow for some


def test_served_results_equal_in_process_onnxruntime(triton_url: str, in_process: InProcessDetector) -> None:
    names = sorted(EXPECTED)
    served = detect_one_by_one(triton_url, [photo(n) for n in names])
    for name, result in zip(names, served, strict=False):
        assert_same_detections(result, in_process.detect(photo(name)))


def test_thresholds_are_request_parameters(triton_url: str, in_process: InProcessDetector) -> None:
    image = photo("dog.jpg")
    loose, strict = (
        detect_one_by_one(triton_url, [image, image], score_threshold=0.2, iou_threshold=0.3)[0],
        detect_one_by_one(triton_url, [image], score_threshold=0.6)[0],
    )
    assert len(strict) < len(loose) and (strict.scores > 0.6).all() and (loose.scores > 0.2).all()
    assert_same_detections(loose, in_process.detect(image, 0.2, 0.3), threshold=0.2)


def test_a_batch_in_one_request_equals_one_by_one(triton_url: str) -> None:
    images = [photo(n) for n in sorted(EXPECTED)] * 2

    async def together() -> list[ObjectDetections]:
        async with DetectorClient(triton_url) as client:
            return await client.detect_in_one_request(images)

    for batched, alone in zip(run(together()), detect_one_by_one(triton_url, images), strict=False):
        assert_same_detections(batched, alone)


async def detector_counts(url: str) -> tuple[int, int]:
    """(inferences, executions) of the detector model so far: executions < inferences means batching.
    Triton records statistics just after responding, so read until two reads agree."""
    client = grpcclient.InferenceServerClient(url)
    try:
        previous = None
        while True:
            model = (await client.get_inference_statistics("detector")).model_stats[0]
            counts = (model.inference_count, model.execution_count)
            if counts == previous:
                return counts
            previous = counts
            await asyncio.sleep(0.2)
    finally:
        await client.close()


def test_concurrent_requests_are_batched_and_equal_one_by_one(triton_url: str) -> None:
    images = [photo(n) for n in sorted(EXPECTED)] * 3

    async def concurrently() -> tuple[list[ObjectDetections | InferenceRejected], int, int]:
        before = await detector_counts(triton_url)
        async with DetectorClient(triton_url, max_in_flight=len(images)) as client:
            results = await client.detect_many(images)
        after = await detector_counts(triton_url)
        return results, after[0] - before[0], after[1] - before[1]

    results, inferences, executions = run(concurrently())
    assert inferences == len(images)
    assert executions < inferences, "dynamic batching never put two requests in one execution"
    for together, alone in zip(results, detect_one_by_one(triton_url, images), strict=False):
        assert isinstance(together, ObjectDetections)
        assert_same_detections(together, alone)


def bad_inputs() -> dict[str, bytes]:
    jpeg = photo("dog.jpg")
    huge = cv2.imencode(".jpg", np.zeros((10_000, 10_000, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 5])[1].tobytes()
    return {
        "empty": b"",
        "truncated jpeg": jpeg[: len(jpeg) // 3],
        "text": b"this is not an image\n",
        "10000x10000 jpeg": huge,
    }


def test_bad_input_is_rejected_per_request_and_the_rest_succeeds(triton_url: str) -> None:
    bad = bad_inputs()
    tiny = cv2.imencode(".png", np.full((1, 1, 3), 127, np.uint8))[1].tobytes()
    good = [photo(n) for n in sorted(EXPECTED)]
    mixed = [
        good[0],
        bad["empty"],
        good[1],
        bad["truncated jpeg"],
        tiny,
        bad["text"],
        good[2],
        bad["10000x10000 jpeg"],
        good[3],
    ]

    async def send() -> list[ObjectDetections | InferenceRejected]:
        async with DetectorClient(triton_url, max_in_flight=len(mixed)) as client:
            return await client.detect_many(mixed)

    results = run(send())
    messages = {
        1: "empty image data",
        3: "corrupt or truncated JPEG",
        5: "not a JPEG or PNG",
        7: "10000x10000 = 100.0 MP, above the limit",
    }
    for index, fragment in messages.items():
        assert isinstance(results[index], InferenceRejected) and fragment in str(results[index])
    assert isinstance(results[4], ObjectDetections)  # 1x1: a valid image, nothing in it to find
    expected_good = detect_one_by_one(triton_url, good)
    for result, alone in zip([results[0], results[2], results[6], results[8]], expected_good, strict=False):
        assert isinstance(result, ObjectDetections)
        assert_same_detections(result, alone)
    assert len(detect_one_by_one(triton_url, [good[0]])[0]) > 0  # still alive and serving


def test_one_bad_row_rejects_only_its_own_request(triton_url: str) -> None:
    async def send() -> None:
        async with DetectorClient(triton_url) as client:
            await client.detect_in_one_request([photo("dog.jpg"), b"junk"])

    with pytest.raises(InferenceRejected, match="image 1 of 2: not a JPEG or PNG"):
        run(send())


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"score_threshold": "high"}, "score_threshold must be a number"),
        ({"iou_threshold": 2.0}, "iou_threshold must be within"),
    ],
)
def test_bad_parameters_are_invalid_argument(triton_url: str, parameters: dict[str, object], message: str) -> None:
    async def send() -> None:
        client = grpcclient.InferenceServerClient(triton_url)
        rows = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        rows.set_data_from_numpy(np.array([[photo("dog.jpg")]], dtype=np.object_))
        try:
            await client.infer("detector", [rows], parameters=parameters)
        finally:
            await client.close()

    with pytest.raises(InferenceServerException) as caught:
        run(send())
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and message in caught.value.message()


def test_model_version_and_readiness(triton_url: str) -> None:
    async def ask() -> str:
        async with DetectorClient(triton_url) as client:
            await client.wait_ready(timeout_s=10)
            return await client.model_version()

    assert run(ask()) == "1"


def test_metrics_show_the_detector(triton_url: str) -> None:
    """The statistics API names the detector with successful inferences (after the tests above), and the
    network model beside it: here, on CPU, the detector runs the network's ONNX file in its own process
    (triton_models/detector/1/model.py), so nanodet itself is served but not called."""

    async def stats() -> dict[str, int]:
        client = grpcclient.InferenceServerClient(triton_url)
        try:
            answer = await client.get_inference_statistics(as_json=True)
        finally:
            await client.close()
        return {m["name"]: int(m.get("inference_count", 0)) for m in json.loads(json.dumps(answer))["model_stats"]}

    counts = run(stats())
    assert counts.get("detector", 0) > 0 and "nanodet" in counts
