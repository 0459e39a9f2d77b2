"""processors.sampling: which frames a camera keeps to hold its target fps."""

from __future__ import annotations

import itertools
import math

import pytest

from processors.sampling import FpsSampler, source_timestamp


def kept_indices(frame_count: int, source_fps: float, target_fps: float) -> list[int]:
    """Indices of the frames one sampler keeps from ``frame_count`` frames at ``source_fps``."""
    sampler = FpsSampler(target_fps)
    return [index for index in range(frame_count) if sampler.keep(source_timestamp(index, source_fps))]


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "expected_first"),
    [
        (30.0, 10.0, [0, 3, 6, 9, 12, 15]),  # every third frame
        (25.0, 10.0, [0, 3, 5, 8, 10, 13]),  # 2.5 source frames per kept frame, no drift
        (12.0, 10.0, [0, 2, 3, 4, 5, 6]),  # drops 2 of every 12
        (10.0, 10.0, [0, 1, 2, 3, 4, 5]),  # same rate: keeps everything despite rounding
        (5.0, 10.0, [0, 1, 2, 3, 4, 5]),  # target above source: keeps everything
        (60.0, 7.0, [0, 8, 17, 25, 34, 42]),
    ],
)
def test_kept_indices(source_fps: float, target_fps: float, expected_first: list[int]) -> None:
    assert kept_indices(60, source_fps, target_fps)[:6] == expected_first


@pytest.mark.parametrize(
    ("source_fps", "target_fps"), [(30.0, 10.0), (29.97, 10.0), (25.0, 6.0), (12.0, 10.0), (50.0, 1.0)]
)
def test_kept_rate_matches_the_target_over_ten_seconds(source_fps: float, target_fps: float) -> None:
    frames = round(source_fps * 10)
    kept = kept_indices(frames, source_fps, target_fps)
    assert abs(len(kept) - target_fps * 10) <= 1


def test_jittery_live_timestamps_keep_the_target_rate() -> None:
    sampler = FpsSampler(5.0)
    # A 30 fps camera whose frames arrive up to 10 ms late.
    times = [i / 30 + (0.01 if i % 3 else 0.0) for i in range(300)]
    kept = [t for t in times if sampler.keep(t)]
    assert len(kept) == 50
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert min(gaps) > 0.15 and max(gaps) < 0.25


def test_a_stall_reanchors_instead_of_releasing_a_burst() -> None:
    sampler = FpsSampler(10.0)
    assert sampler.keep(0.0)
    assert sampler.keep(0.1)
    # The camera stalls for 2 s, then delivers 30 fps again.
    after = [2.0 + i / 30 for i in range(9)]
    decisions = [sampler.keep(t) for t in after]
    assert decisions == [True, False, False, True, False, False, True, False, False]


def test_time_going_backwards_restarts_the_schedule() -> None:
    sampler = FpsSampler(1.0)
    assert sampler.keep(100.0)
    assert not sampler.keep(100.5)
    assert sampler.keep(3.0)  # a looping file restarts its media time
    assert not sampler.keep(3.5)
    assert sampler.keep(4.0)


def test_reset_keeps_the_next_frame() -> None:
    sampler = FpsSampler(1.0)
    assert sampler.keep(0.0)
    assert not sampler.keep(0.5)
    sampler.reset()
    assert sampler.keep(0.6)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_target_fps_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="target_fps"):
        FpsSampler(bad)


def test_bad_timestamps_and_indices_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        FpsSampler(1.0).keep(math.nan)
    with pytest.raises(ValueError, match="source_fps"):
        source_timestamp(1, 0.0)
    with pytest.raises(ValueError, match="frame_index"):
        source_timestamp(-1, 10.0)
