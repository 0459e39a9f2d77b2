"""Per-camera drift: does the current window of frames look like the camera's reference window?

Usage:
    monitor = DriftMonitor(DriftConfig(reference_frames=300, window_frames=300, test_every=50))
    events = monitor.update("cam-1", observation_of(frame))  # [] on most frames; DriftEvents when one starts/ends
    monitor.is_drifting("cam-1")

Reference = the first ``reference_frames`` frames seen of a camera, then fixed (a restart, or a new
``DriftMonitor``, builds it again from the frames that follow). Current = the last ``window_frames``
frames after the reference, tested every ``test_every`` frames. Each statistic is tested on its
own: continuous ones (brightness, contrast, sharpness, detection confidence, detections per frame)
with the two-sample Kolmogorov-Smirnov test, categorical ones (resolution, class mix, empty frames)
with the chi-square test of the 2 x k contingency table. A test alone alarms on tiny shifts once
windows are large, so drift needs both ``p < p_value`` and a population stability index (PSI, the
effect size) of at least ``min_psi``; it ends when ``p >= end_p_value`` or ``PSI < end_psi``
(hysteresis, so a statistic near the threshold does not flap). One event when a statistic starts
drifting and one when it ends, never one per frame. Consecutive frames are not independent, which
both tests assume: the reference's lag-1 autocorrelation discounts the sample sizes
(``variance_inflation``), so light that merely wanders does not alarm.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal

import numpy as np
from scipy.special import kolmogorov
from scipy.stats import chi2 as chi2_distribution
from scipy.stats import chi2_contingency

from schemas.detections import FrameDetections

PSI_SMOOTHING = 0.5  # counts added to every bin, so an empty bin gives a large but finite PSI term
PSI_QUANTILES = np.linspace(0.1, 0.9, 9)  # reference deciles as bin edges
RARE_CATEGORY_COUNT = 10  # categories seen fewer times (both windows) are pooled into OTHER
OTHER = "(other)"
MAX_COUNT_BUCKET = 10  # detections per frame above this are pooled (a crowd is a crowd)
NEGLIGIBLE_SPREAD = 1e-3  # a reference whose standard deviation is below this fraction of its mean is constant
MAX_AUTOCORRELATION = 0.9  # caps the inflation at 19: a full-window change stays detectable


class Statistic(str, Enum):
    BRIGHTNESS = "brightness"
    CONTRAST = "contrast"
    SHARPNESS = "sharpness"
    RESOLUTION = "resolution"
    CLASS_MIX = "class_mix"
    MEAN_CONFIDENCE = "mean_confidence"
    DETECTIONS_PER_FRAME = "detections_per_frame"
    EMPTY_RATE = "empty_rate"


CONTINUOUS = (
    Statistic.BRIGHTNESS,
    Statistic.CONTRAST,
    Statistic.SHARPNESS,
    Statistic.MEAN_CONFIDENCE,
    Statistic.DETECTIONS_PER_FRAME,
)
CATEGORICAL = (Statistic.RESOLUTION, Statistic.CLASS_MIX, Statistic.EMPTY_RATE)


@dataclass(frozen=True)
class FrameObservation:
    """What drift looks at in one frame."""

    frame_seq: int
    captured_at: datetime
    width: int
    height: int
    class_names: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    brightness: float | None = None
    contrast: float | None = None
    sharpness: float | None = None


def observation_of(frame: FrameDetections) -> FrameObservation:
    stats = frame.stats
    return FrameObservation(
        frame_seq=frame.frame_seq,
        captured_at=frame.captured_at,
        width=frame.width,
        height=frame.height,
        class_names=tuple(d.class_name for d in frame.detections),
        scores=tuple(d.score for d in frame.detections),
        brightness=stats.brightness if stats else None,
        contrast=stats.contrast if stats else None,
        sharpness=stats.sharpness if stats else None,
    )


def continuous_samples(statistic: Statistic, frames: Iterable[FrameObservation]) -> np.ndarray:
    """The values a continuous statistic is tested on: one per frame, or one per detection for confidence."""
    if statistic is Statistic.MEAN_CONFIDENCE:
        return np.fromiter((s for f in frames for s in f.scores), dtype=np.float64)
    if statistic is Statistic.DETECTIONS_PER_FRAME:
        return np.fromiter((min(len(f.class_names), MAX_COUNT_BUCKET) for f in frames), dtype=np.float64)
    values = (getattr(f, statistic.value) for f in frames)
    return np.fromiter((v for v in values if v is not None), dtype=np.float64)


def categorical_counts(statistic: Statistic, frames: Iterable[FrameObservation]) -> Counter[str]:
    """Category counts: one per frame (resolution, empty or not), or one per detection (class mix)."""
    if statistic is Statistic.RESOLUTION:
        return Counter(f"{f.width}x{f.height}" for f in frames)
    if statistic is Statistic.EMPTY_RATE:
        return Counter("empty" if not f.class_names else "objects" for f in frames)
    if statistic is Statistic.CLASS_MIX:
        return Counter(name for f in frames for name in f.class_names)
    raise ValueError(f"{statistic.value} is not categorical")


@dataclass(frozen=True)
class TestResult:
    test: Literal["ks", "chi2"]
    statistic: float  # KS D, or the chi-square statistic
    p_value: float
    psi: float
    reference_value: float  # mean (continuous) or share of ``category`` (categorical)
    current_value: float
    reference_samples: int
    current_samples: int
    category: str | None = None  # categorical: the category whose share changed most


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins, with additive smoothing."""
    if reference_counts.shape != current_counts.shape or reference_counts.size == 0:
        raise ValueError("PSI needs two non-empty histograms over the same bins")
    ref = (reference_counts + PSI_SMOOTHING) / (reference_counts.sum() + PSI_SMOOTHING * reference_counts.size)
    cur = (current_counts + PSI_SMOOTHING) / (current_counts.sum() + PSI_SMOOTHING * current_counts.size)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def bin_edges(reference: np.ndarray) -> np.ndarray:
    return np.unique(np.quantile(reference, PSI_QUANTILES))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in 2k+1 bins: below, at and between the k edges. A value equal to an edge gets its own
    bin, so a constant reference (a fixed camera, an integer count) still separates lower from higher."""
    index = np.searchsorted(edges, values, side="left") + np.searchsorted(edges, values, side="right")
    return np.bincount(index, minlength=2 * edges.size + 1).astype(np.float64)


def ks_test(reference: np.ndarray, current: np.ndarray, inflation: float = 1.0) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: the statistic D and its asymptotic two-sided p-value.

    The same D as ``scipy.stats.ks_2samp``; the p-value is Kolmogorov's limit distribution at
    sqrt(n m / (n + m)) D, as ks_2samp's ``method="asymp"`` approximates it, but in microseconds
    instead of milliseconds (ks_2samp's exact finite-n series dominated a test's cost). Conservative
    for tied values (a fixed camera, integer counts): it can only understate drift there. ``inflation``
    (see ``variance_inflation``) shrinks the sample sizes to what correlated frames are worth."""
    ref, cur = np.sort(reference), np.sort(current)
    both = np.concatenate([ref, cur])
    gap = np.searchsorted(ref, both, side="right") / ref.size - np.searchsorted(cur, both, side="right") / cur.size
    d = float(np.max(np.abs(gap)))
    effective = ref.size * cur.size / (ref.size + cur.size) / inflation
    return d, float(np.clip(kolmogorov(math.sqrt(effective) * d), 0.0, 1.0))


def continuous_test(reference: np.ndarray, current: np.ndarray, inflation: float = 1.0) -> TestResult:
    d, p_value = ks_test(reference, current, inflation)
    edges = bin_edges(reference)
    return TestResult(
        test="ks",
        statistic=d,
        p_value=p_value,
        psi=psi(histogram(reference, edges), histogram(current, edges)),
        reference_value=float(reference.mean()),
        current_value=float(current.mean()),
        reference_samples=int(reference.size),
        current_samples=int(current.size),
    )


def categorical_test(reference: Mapping[str, int], current: Mapping[str, int], inflation: float = 1.0) -> TestResult:
    categories = pool_rare(reference, current)
    ref = np.array([sum(reference.get(c, 0) for c in members) for members in categories.values()], dtype=np.float64)
    cur = np.array([sum(current.get(c, 0) for c in members) for members in categories.values()], dtype=np.float64)
    if len(categories) < 2:
        chi2, p_value = 0.0, 1.0
    else:
        answer = chi2_contingency(np.vstack([ref, cur]))
        chi2 = float(answer.statistic)
        p_value = float(chi2_distribution.sf(chi2 / inflation, answer.dof))  # the design-effect correction
    ref_share, cur_share = ref / max(ref.sum(), 1), cur / max(cur.sum(), 1)
    moved = int(np.argmax(np.round(np.abs(cur_share - ref_share), 9)))  # ties: the first category
    return TestResult(
        test="chi2",
        statistic=chi2,
        p_value=p_value,
        psi=psi(ref, cur),
        reference_value=float(ref_share[moved]),
        current_value=float(cur_share[moved]),
        reference_samples=int(ref.sum()),
        current_samples=int(cur.sum()),
        category=list(categories)[moved],
    )


def pool_rare(reference: Mapping[str, int], current: Mapping[str, int]) -> dict[str, tuple[str, ...]]:
    """Category -> the names it stands for; rare ones (too few for chi-square) pooled into OTHER."""
    totals = Counter(reference) + Counter(current)
    common = sorted(name for name, count in totals.items() if count >= RARE_CATEGORY_COUNT)
    rare = tuple(sorted(name for name, count in totals.items() if 0 < count < RARE_CATEGORY_COUNT))
    pooled = {name: (name,) for name in common}
    if rare:
        pooled[OTHER] = rare
    return pooled


@dataclass(frozen=True)
class DriftConfig:
    reference_frames: int = 300
    window_frames: int = 300
    test_every: int = 50
    p_value: float = 1e-4
    min_psi: float = 0.25
    end_p_value: float = 1e-2
    end_psi: float = 0.1
    min_samples: int = 30  # a statistic with fewer values in either window is not tested
    statistics: tuple[Statistic, ...] = tuple(Statistic)

    def __post_init__(self) -> None:
        problems = []
        if self.reference_frames < 2 or self.window_frames < 2:
            problems.append("reference_frames and window_frames must be at least 2")
        if self.test_every < 1:
            problems.append("test_every must be at least 1")
        if not 0 < self.p_value <= self.end_p_value < 1:
            problems.append("need 0 < p_value <= end_p_value < 1")
        if not 0 <= self.end_psi <= self.min_psi:
            problems.append("need 0 <= end_psi <= min_psi")
        if self.min_samples < 2:
            problems.append("min_samples must be at least 2")
        if not self.statistics or len(set(self.statistics)) != len(self.statistics):
            problems.append("statistics must be non-empty and without repeats")
        if problems:
            raise ValueError("; ".join(problems))

    def starts(self, result: TestResult) -> bool:
        return result.p_value < self.p_value and result.psi >= self.min_psi

    def ends(self, result: TestResult) -> bool:
        return result.p_value >= self.end_p_value or result.psi < self.end_psi


@dataclass(frozen=True)
class DriftEvent:
    statistic: Statistic
    state: Literal["started", "ended"]
    result: TestResult
    reference: tuple[FrameObservation, FrameObservation]  # first and last frame of the reference
    window: tuple[FrameObservation, FrameObservation]  # first and last frame of the current window
    reference_frames: int
    window_frames: int


def frame_series(statistic: Statistic, frames: Sequence[FrameObservation]) -> np.ndarray:
    """One number per frame, in frame order, whose autocorrelation stands for the statistic's."""
    if statistic is Statistic.MEAN_CONFIDENCE:
        return np.array([float(np.mean(f.scores)) for f in frames if f.scores])
    if statistic is Statistic.RESOLUTION:
        return np.array([float(f.width * f.height) for f in frames])
    if statistic is Statistic.EMPTY_RATE:
        return np.array([float(not f.class_names) for f in frames])
    if statistic is Statistic.CLASS_MIX:
        common = Counter(name for f in frames for name in f.class_names).most_common(1)
        top = common[0][0] if common else ""
        return np.array([float(f.class_names.count(top)) for f in frames])
    return continuous_samples(statistic, frames)


def variance_inflation(series: np.ndarray) -> float:
    """(1 + r) / (1 - r) for the series' lag-1 autocorrelation r, when r is clearly positive, else 1.

    Consecutive frames of a camera are alike (the same light, the same parked car), so n frames
    carry the information of about n / inflation independent ones; the tests assume independent
    samples and, uncorrected, alarm on a window that merely wanders. r is taken from the reference
    (the camera's normal), and ignored below 2 / sqrt(n), where white noise alone could put it."""
    if series.size < 3 or float(np.std(series)) <= NEGLIGIBLE_SPREAD * abs(float(np.mean(series))):
        return 1.0  # constant to three digits (a still scene): any correlation is rounding noise
    r = float(np.corrcoef(series[:-1], series[1:])[0, 1])
    if not math.isfinite(r) or r <= 2.0 / math.sqrt(series.size):
        return 1.0
    r = min(r, MAX_AUTOCORRELATION)
    return (1.0 + r) / (1.0 - r)


Samples = np.ndarray | Counter[str]


def samples(statistic: Statistic, frames: Sequence[FrameObservation]) -> Samples:
    if statistic in CATEGORICAL:
        return categorical_counts(statistic, frames)
    return continuous_samples(statistic, frames)


def run_test(reference: Samples, current: Samples, min_samples: int, inflation: float = 1.0) -> TestResult | None:
    """The statistic's test, or None when either window has too few values for it."""
    if isinstance(reference, Counter) and isinstance(current, Counter):
        if min(reference.total(), current.total()) < min_samples:
            return None
        return categorical_test(reference, current, inflation)
    assert isinstance(reference, np.ndarray) and isinstance(current, np.ndarray)
    if min(reference.size, current.size) < min_samples:
        return None
    return continuous_test(reference, current, inflation)


@dataclass
class CameraDrift:
    """One camera's windows and which statistics are drifting."""

    config: DriftConfig
    reference: list[FrameObservation] = field(default_factory=list)
    window: deque[FrameObservation] = field(init=False)
    drifting: set[Statistic] = field(default_factory=set)
    since_reference: int = 0
    seen: set[tuple[int, datetime]] = field(default_factory=set)  # frames in the reference and the window
    reference_samples: dict[Statistic, Samples] = field(default_factory=dict)
    inflation: dict[Statistic, float] = field(default_factory=dict)  # per statistic, from the reference

    def __post_init__(self) -> None:
        self.window = deque(maxlen=self.config.window_frames)

    def update(self, observation: FrameObservation) -> list[DriftEvent]:
        """Add one frame; the events of the statistics that started or stopped drifting with it."""
        identity = (observation.frame_seq, observation.captured_at)
        if identity in self.seen:
            return []  # a redelivered frame (at-least-once): counting it twice would bias the window
        self.seen.add(identity)
        if len(self.reference) < self.config.reference_frames:
            self.reference.append(observation)
            return []
        if len(self.window) == self.window.maxlen:
            oldest = self.window[0]
            self.seen.discard((oldest.frame_seq, oldest.captured_at))
        self.window.append(observation)
        self.since_reference += 1
        due = self.since_reference >= self.config.window_frames and self.since_reference % self.config.test_every == 0
        return self._test() if due else []

    def _test(self) -> list[DriftEvent]:
        events = []
        current = list(self.window)
        if not self.reference_samples:  # the reference is fixed: its samples are taken once
            self.reference_samples = {s: samples(s, self.reference) for s in self.config.statistics}
            self.inflation = {s: variance_inflation(frame_series(s, self.reference)) for s in self.config.statistics}
        for statistic in self.config.statistics:
            reference, inflation = self.reference_samples[statistic], self.inflation[statistic]
            result = run_test(reference, samples(statistic, current), self.config.min_samples, inflation)
            if result is None:
                continue
            if statistic not in self.drifting and self.config.starts(result):
                self.drifting.add(statistic)
                events.append(self._event(statistic, "started", result, current))
            elif statistic in self.drifting and self.config.ends(result):
                self.drifting.discard(statistic)
                events.append(self._event(statistic, "ended", result, current))
        return events

    def _event(
        self,
        statistic: Statistic,
        state: Literal["started", "ended"],
        result: TestResult,
        current: list[FrameObservation],
    ) -> DriftEvent:
        return DriftEvent(
            statistic,
            state,
            result,
            (self.reference[0], self.reference[-1]),
            (current[0], current[-1]),
            len(self.reference),
            len(current),
        )


class DriftMonitor:
    """``CameraDrift`` per camera id, created on a camera's first frame."""

    def __init__(self, config: DriftConfig) -> None:
        self.config = config
        self.cameras: dict[str, CameraDrift] = {}

    def update(self, camera_id: str, observation: FrameObservation) -> list[DriftEvent]:
        camera = self.cameras.get(camera_id)
        if camera is None:
            camera = self.cameras[camera_id] = CameraDrift(self.config)
        return camera.update(observation)

    def is_drifting(self, camera_id: str) -> bool:
        """Whether any statistic of the camera is drifting now (since its last test)."""
        camera = self.cameras.get(camera_id)
        return camera is not None and bool(camera.drifting)

    def drifting(self, camera_id: str) -> frozenset[Statistic]:
        camera = self.cameras.get(camera_id)
        return frozenset(camera.drifting) if camera is not None else frozenset()
