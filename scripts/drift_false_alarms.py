"""False-alarm rate and detection delay of ``processors.drift`` on synthetic per-frame stats.

    .venv/bin/python scripts/drift_false_alarms.py [--runs 10] [--frames 10000]

Stable cameras: brightness, contrast and sharpness with independent noise per frame (and, as a
harder case, brightness following an AR(1) process with the same spread: light that wanders
slowly, as a real scene's does), Poisson objects of four classes, beta-distributed scores. Every
test of every statistic that starts a drift counts as a false alarm. Then the same cameras with
one step change after the first reference + window + 200 frames: the frames until the event.
Figures are quoted in the README (Model monitoring).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from processors.drift import DriftConfig, DriftMonitor, FrameObservation, Statistic

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLASSES = ("person", "car", "dog", "bicycle")
Frame = Callable[[np.random.Generator, int, float], FrameObservation]


def frame(
    rng: np.random.Generator,
    seq: int,
    brightness: float,
    *,
    blur: float = 1.0,
    mix: tuple[float, ...] = (0.5, 0.3, 0.1, 0.1),
    confidence: tuple[float, float] = (6.0, 3.0),
    objects: float = 1.5,
) -> FrameObservation:
    count = int(rng.poisson(objects))
    return FrameObservation(
        seq,
        T0 + timedelta(seconds=seq),
        640,
        480,
        tuple(str(c) for c in rng.choice(CLASSES, size=count, p=mix)),
        tuple(float(s) for s in rng.beta(*confidence, size=count)),
        brightness=float(np.clip(brightness, 0, 255)),
        contrast=float(max(rng.normal(50.0, 3.0), 0.0)),
        sharpness=float(rng.lognormal(np.log(300.0 * blur), 0.2)),
    )


def brightness_series(rng: np.random.Generator, frames: int, ar: float) -> np.ndarray:
    """Mean 120, standard deviation 5; ``ar`` > 0: each frame's noise carries over that much."""
    noise = rng.normal(0.0, 5.0 * np.sqrt(1 - ar**2), frames)
    values = np.empty(frames)
    values[0] = rng.normal(0.0, 5.0)
    for i in range(1, frames):
        values[i] = ar * values[i - 1] + noise[i]
    return 120.0 + values


def false_alarms(config: DriftConfig, runs: int, frames: int, ar: float) -> tuple[int, int, dict[str, int]]:
    alarms: dict[str, int] = {}
    tests = 0
    for run in range(runs):
        rng = np.random.default_rng(run)
        light = brightness_series(rng, frames, ar)
        monitor = DriftMonitor(config)
        for seq in range(frames):
            for event in monitor.update("cam", frame(rng, seq, light[seq])):
                if event.state == "started":
                    alarms[event.statistic.value] = alarms.get(event.statistic.value, 0) + 1
        tests += (frames - config.reference_frames - config.window_frames) // config.test_every + 1
    return sum(alarms.values()), tests * len(config.statistics), alarms


CHANGES: dict[str, tuple[Callable[[np.random.Generator, int], FrameObservation], Statistic]] = {
    "darker (120 -> 60)": (lambda rng, seq: frame(rng, seq, rng.normal(60, 5)), Statistic.BRIGHTNESS),
    "blurred (sharpness x0.2)": (lambda rng, seq: frame(rng, seq, rng.normal(120, 5), blur=0.2), Statistic.SHARPNESS),
    "class mix (person 50% -> 10%)": (
        lambda rng, seq: frame(rng, seq, rng.normal(120, 5), mix=(0.1, 0.3, 0.5, 0.1)),
        Statistic.CLASS_MIX,
    ),
    "less confident (mean 0.67 -> 0.43)": (
        lambda rng, seq: frame(rng, seq, rng.normal(120, 5), confidence=(3.0, 4.0)),
        Statistic.MEAN_CONFIDENCE,
    ),
    "resolution 640x480 -> 1280x720": (
        lambda rng, seq: replace(frame(rng, seq, rng.normal(120, 5)), width=1280, height=720),
        Statistic.RESOLUTION,
    ),
    "half the frames empty": (
        lambda rng, seq: (
            replace(f, class_names=(), scores=()) if rng.random() < 0.5 else f
            for f in [frame(rng, seq, rng.normal(120, 5))]
        ).__next__(),
        Statistic.EMPTY_RATE,
    ),
}


def delays(config: DriftConfig, runs: int) -> dict[str, list[int]]:
    before = config.reference_frames + config.window_frames + 200
    found: dict[str, list[int]] = {}
    for name, (changed, statistic) in CHANGES.items():
        for run in range(runs):
            rng = np.random.default_rng(1000 + run)
            monitor = DriftMonitor(config)
            for seq in range(before + 3 * config.window_frames):
                observed = frame(rng, seq, rng.normal(120, 5)) if seq < before else changed(rng, seq)
                events = monitor.update("cam", observed)
                if any(e.statistic is statistic and e.state == "started" for e in events):
                    found.setdefault(name, []).append(seq - before + 1)
                    break
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--frames", type=int, default=10_000)
    args = parser.parse_args()
    config = DriftConfig()
    print(f"config: {config}")
    for ar in (0.0, 0.9):
        started = time.perf_counter()
        alarms, tests, by_statistic = false_alarms(config, args.runs, args.frames, ar)
        print(
            f"stable, brightness AR({ar}): {alarms} false alarms in {tests} statistic-tests "
            f"({args.runs} x {args.frames} frames) {by_statistic}  [{time.perf_counter() - started:.0f} s]"
        )
    for name, frames in delays(config, max(3, args.runs // 2)).items():
        print(f"{name}: detected after {sorted(frames)} frames")


if __name__ == "__main__":
    main()
