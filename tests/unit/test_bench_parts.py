"""The benchmarks' pure parts: the null model's contract, frame making, CPU and time accounting."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from framestream.bench import breakdown, cpu
from framestream.bench.feeder import load_frames, save_frames
from framestream.bench.jpegs import camera_jpegs, encode_near
from framestream.bench.photos import PHOTOS
from framestream.bench.report import percentile

REPO = Path(__file__).resolve().parents[2]


def config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_the_null_detector_has_the_served_detectors_contract_and_lives_outside_the_served_repository() -> None:
    real = config(REPO / "triton_models" / "detector" / "config.pbtxt")
    null = config(REPO / "infra" / "triton" / "passthrough" / "detector" / "config.pbtxt")
    for part in ("name", "max_batch_size", "input", "output", "dynamic_batching"):
        assert getattr(null, part) == getattr(real, part), part
    assert (REPO / "infra" / "triton" / "passthrough" / "detector" / "1" / "model.py").is_file()
    assert not (REPO / "triton_models" / "passthrough").exists()


def test_camera_jpegs_are_deterministic_and_near_the_target_size(tmp_path: Path) -> None:
    shutil.copy(PHOTOS / "dog.jpg", tmp_path / "dog.jpg")
    first, again = camera_jpegs(150_000, tmp_path), camera_jpegs(150_000, tmp_path)
    assert [frame.data for frame in first] == [frame.data for frame in again]
    assert len(first) == 2 and first[0].data != first[1].data
    for frame in first:
        assert 120_000 <= len(frame.data) <= 180_000
        assert (frame.width, frame.height) == (1280, 720) and frame.data.startswith(b"\xff\xd8")


def test_encode_near_rejects_nothing_and_moves_with_the_target() -> None:
    import numpy as np

    image = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    small, large = encode_near(image, 60_000), encode_near(image, 200_000)
    assert len(small) < len(large)


def test_frames_saved_for_the_feeder_load_back_with_their_size(tmp_path: Path) -> None:
    save_frames([(b"\xff\xd8a", 1280, 720), (b"\xff\xd8b", 640, 480)], tmp_path)
    assert load_frames(tmp_path) == [(b"\xff\xd8a", 1280, 720), (b"\xff\xd8b", 640, 480)]
    with pytest.raises(FileNotFoundError):
        load_frames(tmp_path / "none")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_cpu_of_a_child_counts_its_own_children() -> None:
    burn = (
        "import time\ntime.sleep(1)\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ntime.sleep(30)"
    )
    spawn = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {burn!r}]); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", spawn])
    try:
        time.sleep(0.5)
        assert cpu.find_children("subprocess.Popen") == [child.pid]
        before = cpu.sample({"child": child.pid, "self": os.getpid(), "gone": 999_999_999})
        assert set(before) == {"child", "self"}
        deadline = time.monotonic() + 30
        while cpu.cpu_seconds(before, cpu.sample({"child": child.pid}))["child"] < 0.4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cpu.cpu_seconds(before, cpu.sample({"child": child.pid}))["child"] >= 0.4, "its child's burn"
    finally:
        for pid in reversed(cpu.descendants(child.pid, cpu.all_stats())):
            os.kill(pid, 9)
        child.wait()


METRICS_BEFORE = """
framestream_stage_latency_seconds_count{stage="detect",step="publish"} 2
framestream_stage_latency_seconds_sum{stage="detect",step="publish"} 0.5
framestream_stage_latency_seconds_count{stage="persist",step="flush"} 1
framestream_stage_latency_seconds_sum{stage="persist",step="flush"} 0.1
"""
METRICS_AFTER = """
framestream_stage_latency_seconds_count{stage="detect",step="publish"} 6
framestream_stage_latency_seconds_sum{stage="detect",step="publish"} 0.9
framestream_stage_latency_seconds_count{stage="persist",step="flush"} 1
framestream_stage_latency_seconds_sum{stage="persist",step="flush"} 0.1
"""


def test_histogram_means_cover_only_the_window() -> None:
    before, after = breakdown.parse_metrics(METRICS_BEFORE), breakdown.parse_metrics(METRICS_AFTER)
    assert breakdown.histogram_mean_ms(
        before, after, "framestream_stage_latency_seconds", stage="detect", step="publish"
    ) == pytest.approx(100.0)
    assert breakdown.histogram_mean_ms(before, after, "framestream_stage_latency_seconds", step="flush") is None
    assert breakdown.parse_metrics(None) == {}


def test_triton_statistics_per_request_and_the_steps_of_a_frame() -> None:
    earlier = breakdown.TritonModelStats(requests=10, executions=5, inferences=10, queue_ns=10**7, compute_ns=10**8)
    later = breakdown.TritonModelStats(
        requests=30, executions=10, inferences=50, queue_ns=5 * 10**7, compute_ns=3 * 10**8
    )
    window = later.minus(earlier)
    assert (window.queue_ms, window.compute_ms, window.batch_size) == (2.0, 10.0, 8.0)
    assert breakdown.TritonModelStats(0, 0, 0, 0, 0).queue_ms is None
    times = breakdown.FrameTimes(
        frames=40,
        ingest_ms=0.1,
        queue_ms=20.0,
        batch_wait_ms=5.0,
        triton_ms=15.0,
        detected_ms=45.0,
        stored_ms=300.0,
        stored_p50_ms=280.0,
        stored_p95_ms=400.0,
        detected_p95_ms=60.0,
        triton_p95_ms=20.0,
        detected_p50_ms=44.0,
        last_stored_at=0.0,
        ingest_p95_ms=0.2,
        queue_p95_ms=30.0,
        batch_wait_p95_ms=9.0,
        after_detect_p95_ms=350.0,
    )
    assert times.p95_steps()["detections made -> stored"] == 350.0
    steps = dict(breakdown.steps(times, breakdown.WindowTimes(3.0, 4.0, 30.0, 25.0, {"detector": window})))
    assert steps["gRPC + client (Triton round trip - server)"] == pytest.approx(3.0)
    assert steps["persist: consume + wait for flush"] == pytest.approx(300.0 - 45.0 - 4.0 - 25.0)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([3.0, 1.0, 2.0], 0.5, 2.0),
        ([0.0, 10.0], 0.95, 9.5),  # interpolated, like numpy, for every benchmark alike
        ([7.0], 0.95, 7.0),
        (list(range(101)), 0.95, 95.0),
    ],
)
def test_percentile_is_one_definition_for_every_benchmark(
    values: list[float], fraction: float, expected: float
) -> None:
    assert percentile(values, fraction) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_and_a_bad_fraction_is_refused() -> None:
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="within 0..1"):
        percentile([1.0], 95)
