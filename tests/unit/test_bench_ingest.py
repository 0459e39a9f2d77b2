"""The ingest benchmark's search for the most cameras one core sustains, and its keep-up rule."""

from __future__ import annotations

import pytest

from framestream.bench.ingest import Trial, next_count


@pytest.mark.parametrize(
    ("passed", "failed", "limit", "expected"),
    [
        (None, None, 64, 1),  # start with one camera
        (1, None, 64, 2),  # doubling while every count keeps up
        (8, None, 64, 16),
        (32, None, 40, None),  # the limit itself is not exceeded
        (8, 16, 64, 12),  # then bisecting between the last pass and the first failure
        (8, 10, 64, 9),
        (8, 9, 64, None),  # found: 8
        (None, 1, 64, None),  # not even one camera keeps up
    ],
)
def test_next_count(passed: int | None, failed: int | None, limit: int, expected: int | None) -> None:
    assert next_count(passed, failed, limit) == expected


def search(capacity: int, limit: int = 64) -> int:
    passed = failed = None
    while (count := next_count(passed, failed, limit)) is not None:
        if count <= capacity:
            passed = count
        else:
            failed = count
    return passed or 0


@pytest.mark.parametrize("capacity", [0, 1, 2, 3, 7, 12, 33, 64])
def test_the_search_finds_the_capacity(capacity: int) -> None:
    assert search(capacity) == capacity


@pytest.mark.parametrize(
    ("fps", "age_p50_ms", "keeps_up"),
    [((10.0, 9.9), 20.0, True), ((10.0, 8.6), 20.0, True), ((10.0, 8.4), 20.0, False), ((10.0, 10.0), 150.0, False)],
)
def test_keeps_up(fps: tuple[float, ...], age_p50_ms: float, keeps_up: bool) -> None:
    trial = Trial(2, 10.0, 5.0, 1.0, fps, age_p50_ms, age_p50_ms * 2)
    assert trial.keeps_up() is keeps_up
    assert trial.cpu_ms_per_frame == pytest.approx(1000 / (sum(fps) * 5.0))
    assert trial.cpu_per_camera == pytest.approx(trial.cpu_ms_per_frame * 10 / 1000)


@pytest.mark.parametrize(
    ("cpu_s", "fps", "starved"),
    [(2.0, (5.0,), True), (4.8, (5.0,), False), (2.0, (10.0,), False)],  # 0.4 / 0.96 / 0.4 cores of 5 s
)
def test_behind_with_the_core_busy_elsewhere_is_starved(cpu_s: float, fps: tuple[float, ...], starved: bool) -> None:
    assert Trial(8, 10.0, 5.0, cpu_s, fps, 20.0, 40.0).starved() is starved
