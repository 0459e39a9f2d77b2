"""processors.drift: the tests per statistic, the windows, the events, and the false-alarm rate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.stats import ks_2samp

from processors.drift import (
    OTHER,
    CameraDrift,
    DriftConfig,
    DriftMonitor,
    FrameObservation,
    Statistic,
    categorical_test,
    continuous_test,
    histogram,
    ks_test,
    observation_of,
    pool_rare,
    psi,
    variance_inflation,
)
from schemas import ImageStats
from tests.factories import make_detection, make_frame_detections

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLASSES = ("person", "car", "dog", "bicycle")
SMALL = DriftConfig(reference_frames=200, window_frames=200, test_every=25)


def stable_frame(
    rng: np.random.Generator,
    seq: int,
    *,
    brightness: float = 120.0,
    contrast: float = 50.0,
    blur: float = 1.0,
    mix: tuple[float, ...] = (0.5, 0.3, 0.1, 0.1),
    confidence: tuple[float, float] = (6.0, 3.0),
    objects: float = 1.5,
    size: tuple[int, int] = (640, 480),
) -> FrameObservation:
    """Synthetic per-frame stats of a fixed camera: noisy light, Poisson objects, beta scores."""
    count = int(rng.poisson(objects))
    return FrameObservation(
        seq,
        T0 + timedelta(seconds=seq),
        size[0],
        size[1],
        tuple(str(c) for c in rng.choice(CLASSES, size=count, p=mix)),
        tuple(float(s) for s in rng.beta(*confidence, size=count)),
        brightness=float(np.clip(rng.normal(brightness, 5.0), 0, 255)),
        contrast=float(max(rng.normal(contrast, 3.0), 0.0)),
        sharpness=float(rng.lognormal(np.log(300.0 * blur), 0.2)),
    )


def emptier(rng: np.random.Generator, seq: int) -> FrameObservation:
    frame = stable_frame(rng, seq)
    return replace(frame, class_names=(), scores=()) if rng.random() < 0.5 else frame


# drift kind -> the frames after the change, the statistic expected to start drifting
DRIFTS: dict[str, tuple[Callable[[np.random.Generator, int], FrameObservation], Statistic]] = {
    "darker": (lambda rng, seq: stable_frame(rng, seq, brightness=60.0), Statistic.BRIGHTNESS),
    "foggy": (lambda rng, seq: stable_frame(rng, seq, contrast=20.0), Statistic.CONTRAST),
    "blurred": (lambda rng, seq: stable_frame(rng, seq, blur=0.2), Statistic.SHARPNESS),
    "resized": (lambda rng, seq: stable_frame(rng, seq, size=(1280, 720)), Statistic.RESOLUTION),
    "other classes": (lambda rng, seq: stable_frame(rng, seq, mix=(0.1, 0.3, 0.5, 0.1)), Statistic.CLASS_MIX),
    "less confident": (lambda rng, seq: stable_frame(rng, seq, confidence=(3.0, 4.0)), Statistic.MEAN_CONFIDENCE),
    "crowded": (lambda rng, seq: stable_frame(rng, seq, objects=4.0), Statistic.DETECTIONS_PER_FRAME),
    "emptier": (emptier, Statistic.EMPTY_RATE),
}


def run(
    monitor: DriftMonitor,
    before: int,
    after: int,
    changed: Callable[[np.random.Generator, int], FrameObservation],
    seed: int,
) -> list[tuple[int, Any]]:
    """Feed ``before`` stable frames then ``after`` changed ones; (frames since the change, event) pairs."""
    rng = np.random.default_rng(seed)
    found = []
    for seq in range(before + after):
        frame = stable_frame(rng, seq) if seq < before else changed(rng, seq)
        found += [(seq - before + 1, event) for event in monitor.update("cam-1", frame)]
    return found


@pytest.mark.parametrize("kind", list(DRIFTS))
def test_each_kind_of_drift_starts_one_event_within_a_bounded_delay(kind: str) -> None:
    changed, statistic = DRIFTS[kind]
    monitor = DriftMonitor(SMALL)
    before = SMALL.reference_frames + SMALL.window_frames + 100
    events = run(monitor, before, 400, changed, seed=7)
    started = [(delay, e) for delay, e in events if e.state == "started"]
    assert [e.statistic for _, e in started if e.statistic is statistic] == [statistic], "one event, not one per test"
    delay = next(delay for delay, e in started if e.statistic is statistic)
    assert 0 < delay <= SMALL.window_frames, f"{kind}: detected after {delay} frames"
    event = next(e for _, e in started if e.statistic is statistic)
    assert event.result.p_value < SMALL.p_value and event.result.psi >= SMALL.min_psi
    assert event.window[1].frame_seq == before + delay - 1 and event.reference_frames == SMALL.reference_frames
    assert monitor.is_drifting("cam-1") and statistic in monitor.drifting("cam-1")


def test_drift_that_goes_away_ends_with_one_event() -> None:
    monitor = DriftMonitor(SMALL)
    rng = np.random.default_rng(3)
    events = []
    for seq in range(1400):
        frame = stable_frame(rng, seq, brightness=60.0) if 500 <= seq < 800 else stable_frame(rng, seq)
        events += [(e.statistic, e.state) for e in monitor.update("cam-1", frame)]
    assert events == [(Statistic.BRIGHTNESS, "started"), (Statistic.BRIGHTNESS, "ended")]
    assert not monitor.is_drifting("cam-1")


def test_stationary_data_raises_no_alarm_over_many_windows() -> None:
    """False-alarm rate: 8 statistics tested at every one of the windows below, none may alarm."""
    config = DriftConfig(reference_frames=200, window_frames=200, test_every=10)
    tests = 0
    for seed in range(4):
        events = run(DriftMonitor(config), 2400, 0, stable_frame, seed)
        assert events == [], f"seed {seed}: {[(e.statistic.value, e.result) for _, e in events]}"
        tests += (2400 - 400) // 10 + 1
    assert tests >= 800


def test_cameras_are_independent_and_the_reference_is_per_camera() -> None:
    monitor = DriftMonitor(SMALL)
    rng = np.random.default_rng(5)
    for seq in range(800):
        monitor.update("bright", stable_frame(rng, seq))
        monitor.update("dark", stable_frame(rng, seq, brightness=40.0))  # dark from the start: its normal
    assert not monitor.is_drifting("bright") and not monitor.is_drifting("dark")
    assert not monitor.is_drifting("never-seen")


def test_a_redelivered_frame_is_counted_once() -> None:
    camera = CameraDrift(DriftConfig(reference_frames=3, window_frames=2, test_every=1, min_samples=2))
    frame = stable_frame(np.random.default_rng(0), 0)
    for _ in range(3):
        camera.update(frame)
    assert len(camera.reference) == 1


def test_frames_without_image_stats_skip_those_statistics() -> None:
    config = DriftConfig(reference_frames=100, window_frames=100, test_every=10)
    monitor = DriftMonitor(config)
    rng = np.random.default_rng(1)
    for seq in range(400):
        frame = replace(stable_frame(rng, seq), brightness=None, contrast=None, sharpness=None)
        assert monitor.update("cam-1", frame) == []


@pytest.mark.parametrize(
    ("reference", "current", "drifted"),
    [
        ([120.0] * 100, [120.0] * 100, False),  # a still camera: identical values
        ([120.0] * 100, [120.0] * 60 + [50.0] * 40, True),  # constant reference, darker tail
        ([120.0] * 100, [120.0] * 90 + [50.0] * 10, False),  # too few changed to be sure
        (list(np.linspace(100, 140, 200)), list(np.linspace(100.5, 140.5, 200)), False),  # a tiny shift
        (list(np.linspace(100, 140, 200)), list(np.linspace(130, 170, 200)), True),
    ],
)
def test_continuous_test_table(reference: list[float], current: list[float], drifted: bool) -> None:
    result = continuous_test(np.array(reference), np.array(current))
    assert result.test == "ks" and result.reference_samples == len(reference)
    assert SMALL.starts(result) is drifted, result


def test_large_windows_do_not_alarm_on_a_tiny_shift() -> None:
    """With 20k values a 0.05-sigma shift is 'significant'; the effect-size floor keeps it quiet."""
    rng = np.random.default_rng(0)
    result = continuous_test(rng.normal(0, 1, 20_000), rng.normal(0.05, 1, 20_000))
    assert result.p_value < 1e-4 and result.psi < 0.25 and not SMALL.starts(result)


@pytest.mark.parametrize(
    ("reference", "current", "drifted", "category"),
    [
        ({"person": 60, "car": 40}, {"person": 62, "car": 38}, False, None),
        ({"person": 60, "car": 40}, {"person": 10, "car": 90}, True, "car"),
        ({"640x480": 100}, {"640x480": 100}, False, "640x480"),  # one category: nothing to test
        ({"640x480": 100}, {"1280x720": 100}, True, None),
        ({"empty": 20, "objects": 80}, {"empty": 70, "objects": 30}, True, "empty"),
        ({"person": 95, "zebra": 5}, {"person": 96, "giraffe": 4}, False, None),  # rare ones pooled
    ],
)
def test_categorical_test_table(
    reference: dict[str, int], current: dict[str, int], drifted: bool, category: str | None
) -> None:
    result = categorical_test(reference, current)
    assert result.test == "chi2"
    assert SMALL.starts(result) is drifted, result
    if category is not None:
        assert result.category == category


def test_rare_categories_are_pooled() -> None:
    assert pool_rare({"person": 50, "yak": 2}, {"person": 40, "emu": 1}) == {
        "person": ("person",),
        OTHER: ("emu", "yak"),
    }


def test_psi_of_equal_histograms_is_zero_and_grows_with_the_shift() -> None:
    same = np.array([10.0, 20.0, 30.0])
    assert psi(same, same) == pytest.approx(0.0)
    assert 0 < psi(same, np.array([12.0, 20.0, 28.0])) < psi(same, np.array([30.0, 20.0, 10.0]))
    with pytest.raises(ValueError, match="same bins"):
        psi(same, np.array([1.0, 2.0]))


def test_histogram_gives_values_at_an_edge_their_own_bin() -> None:
    counts = histogram(np.array([1.0, 5.0, 5.0, 9.0]), np.array([5.0]))
    assert list(counts) == [1.0, 2.0, 1.0]


def test_observation_of_a_frame() -> None:
    frame = make_frame_detections(
        "cam-1",
        4,
        [make_detection("person", 0.8), make_detection("dog", 0.6)],
        stats=ImageStats(brightness=90.0, sharpness=12.0, contrast=33.0),
    )
    observation = observation_of(frame)
    assert (observation.frame_seq, observation.class_names, observation.scores) == (4, ("person", "dog"), (0.8, 0.6))
    assert (observation.brightness, observation.contrast, observation.sharpness) == (90.0, 33.0, 12.0)
    assert observation_of(make_frame_detections(stats=None)).brightness is None


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"reference_frames": 1}, "reference_frames"),
        ({"window_frames": 0}, "window_frames"),
        ({"test_every": 0}, "test_every"),
        ({"p_value": 0.0}, "p_value"),
        ({"p_value": 0.05, "end_p_value": 0.01}, "p_value <= end_p_value"),
        ({"min_psi": 0.1, "end_psi": 0.2}, "end_psi <= min_psi"),
        ({"min_samples": 1}, "min_samples"),
        ({"statistics": ()}, "statistics"),
        ({"statistics": (Statistic.BRIGHTNESS, Statistic.BRIGHTNESS)}, "statistics"),
    ],
)
def test_bad_configuration_is_refused(arguments: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        DriftConfig(**arguments)


@pytest.mark.parametrize(("shift", "size"), [(0.0, 200), (0.3, 200), (0.5, 500), (1.0, 100)])
def test_ks_test_agrees_with_scipy(shift: float, size: int) -> None:
    rng = np.random.default_rng(11)
    reference, current = rng.normal(0, 1, size), rng.normal(shift, 1, size + 37)
    d, p_value = ks_test(reference, current)
    expected = ks_2samp(reference, current, method="asymp")
    assert d == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue, rel=0.2, abs=1e-6)


def ar1(rng: np.random.Generator, size: int, r: float) -> np.ndarray:
    values = np.empty(size)
    values[0] = rng.normal()
    for i in range(1, size):
        values[i] = r * values[i - 1] + rng.normal(0.0, np.sqrt(1 - r**2))
    return values


@pytest.mark.parametrize(
    ("series", "low", "high"),
    [
        (np.random.default_rng(0).normal(size=300), 1.0, 1.0),  # white noise: no correction
        (np.full(300, 7.0), 1.0, 1.0),  # constant
        (511.0 + 1e-4 * np.sin(np.arange(300) / 20), 1.0, 1.0),  # a still scene's rounding wobble
        (ar1(np.random.default_rng(0), 300, 0.5), 2.0, 4.5),  # (1 + .5) / (1 - .5) = 3
        (ar1(np.random.default_rng(2), 300, 0.99), 18.99, 19.01),  # capped
    ],
)
def test_variance_inflation_follows_the_lag_one_autocorrelation(series: np.ndarray, low: float, high: float) -> None:
    assert low <= variance_inflation(series) <= high


def test_slowly_wandering_light_is_not_drift_but_a_step_still_is() -> None:
    """Brightness that wanders (AR(1), r = 0.9) alarms the uncorrected test; the corrected one stays quiet."""
    config = DriftConfig(reference_frames=300, window_frames=300, test_every=50, statistics=(Statistic.BRIGHTNESS,))
    rng = np.random.default_rng(4)
    uncorrected = corrected = 0
    for _ in range(4):
        light = 120 + 5 * ar1(rng, 3000, 0.9)
        reference = light[:300]
        for end in range(600, 3000, 50):
            current = light[end - 300 : end]
            uncorrected += config.starts(continuous_test(reference, current))
            corrected += config.starts(continuous_test(reference, current, variance_inflation(reference)))
    assert uncorrected > 0 and corrected == 0
    step = np.concatenate([light[:300], light[300:600] - 40])  # the light drops by 8 standard deviations
    assert config.starts(continuous_test(step[:300], step[300:], variance_inflation(step[:300])))
