"""Health accounting of one camera: online/offline, achieved fps against target, decode errors,
reconnects, frame age at ingest, and how long each outage lasted.

    tracker = CameraHealthTracker(target_fps=10, started_at_s=now)
    tracker.update(FrameProduced(captured_at_s=t0, produced_at_s=t1), now=t1)   # None, or a report
    report = tracker.update(Tick(), now=t1 + 10)                                 # periodic report

Pure: no clock, no I/O; the caller passes every observation with the time it saw it (epoch
seconds) and publishes the reports ``update`` returns. A report is due every ``report_every_s``
and at once on a change of state. A camera is offline from the moment its stream is lost, or
once no frame came for ``offline_after_s``; the outage is counted from its last frame to its
first frame after, so it covers the whole time the camera was away, not only the reconnects.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from schemas.camera_health import CameraState, HealthTrigger

# The fewest seconds without a frame before a camera counts as offline (slow cameras get longer).
MIN_OFFLINE_AFTER_S = 5.0
# ... and at least this many of its frame intervals.
OFFLINE_AFTER_FRAMES = 5


@dataclass(frozen=True)
class FrameProduced:
    captured_at_s: float
    produced_at_s: float


@dataclass(frozen=True)
class DecodeFailed:
    pass


@dataclass(frozen=True)
class StreamLost:
    pass


@dataclass(frozen=True)
class Reconnecting:
    pass


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Stopped:
    pass


Observation = FrameProduced | DecodeFailed | StreamLost | Reconnecting | Tick | Stopped


@dataclass(frozen=True)
class HealthReport:
    report_seq: int
    reported_at_s: float
    trigger: HealthTrigger
    state: CameraState
    target_fps: float
    achieved_fps: float
    window_s: float
    frames: int  # since the previous report
    decode_errors: int
    reconnects: int
    frames_total: int
    decode_errors_total: int
    reconnects_total: int
    frame_age_ms_p50: float | None
    frame_age_ms_max: float | None
    last_frame_at_s: float | None
    offline_since_s: float | None
    outage_s: float | None  # offline: so far; first report back online: the whole outage


@dataclass
class _Counts:
    frames: int = 0
    decode_errors: int = 0
    reconnects: int = 0


class CameraHealthTracker:
    """The health of one camera from what ingest observes; ``update`` returns a report when one is due."""

    def __init__(
        self,
        target_fps: float,
        started_at_s: float,
        *,
        window_s: float = 10.0,
        report_every_s: float = 10.0,
        offline_after_s: float | None = None,
    ) -> None:
        for name, value in (("target_fps", target_fps), ("window_s", window_s), ("report_every_s", report_every_s)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if offline_after_s is not None and not (math.isfinite(offline_after_s) and offline_after_s > 0):
            raise ValueError(f"offline_after_s must be a positive number, got {offline_after_s!r}")
        self.target_fps = float(target_fps)
        self.window_s = float(window_s)
        self.report_every_s = float(report_every_s)
        self.offline_after_s = offline_after_s or max(MIN_OFFLINE_AFTER_S, OFFLINE_AFTER_FRAMES / self.target_fps)
        self.started_at_s = started_at_s
        self.state = CameraState.ONLINE  # until the first frame is overdue
        self.offline_since_s: float | None = None
        self.last_frame_at_s: float | None = None
        self.last_outage_s: float | None = None  # the most recent outage that ended
        self._recent: deque[tuple[float, float]] = deque()  # (produced_at_s, age_ms) within the window
        self._since_report = _Counts()
        self._total = _Counts()
        self._next_seq = 0
        self._last_report_s = started_at_s
        self._outage_ended_s: float | None = None  # set until the report that tells it

    def update(self, observation: Observation, now: float) -> HealthReport | None:
        """Account for ``observation`` seen at ``now``; a report when one is due, else None."""
        if isinstance(observation, FrameProduced):
            return self._frame(observation, now)
        if isinstance(observation, DecodeFailed):
            self._since_report.decode_errors += 1
            self._total.decode_errors += 1
        elif isinstance(observation, Reconnecting):
            self._since_report.reconnects += 1
            self._total.reconnects += 1
        elif isinstance(observation, StreamLost):
            if self.state is CameraState.ONLINE:
                return self._go_offline(self._last_seen_s(), now)
        elif isinstance(observation, Stopped):
            return self._report(HealthTrigger.FINAL, now)
        return self._check(now)

    def _frame(self, frame: FrameProduced, now: float) -> HealthReport | None:
        self._since_report.frames += 1
        self._total.frames += 1
        self.last_frame_at_s = frame.captured_at_s
        self._recent.append((frame.produced_at_s, max(0.0, (frame.produced_at_s - frame.captured_at_s) * 1000)))
        if self.state is CameraState.OFFLINE and self.offline_since_s is not None:
            self.last_outage_s = max(0.0, frame.captured_at_s - self.offline_since_s)
            self.state = CameraState.ONLINE
            self.offline_since_s = None
            self._outage_ended_s = self.last_outage_s
            return self._report(HealthTrigger.STATE_CHANGE, now)
        return self._check(now)

    def _last_seen_s(self) -> float:
        return self.last_frame_at_s if self.last_frame_at_s is not None else self.started_at_s

    def _go_offline(self, since_s: float, now: float) -> HealthReport:
        self.state = CameraState.OFFLINE
        self.offline_since_s = since_s
        return self._report(HealthTrigger.STATE_CHANGE, now)

    def _check(self, now: float) -> HealthReport | None:
        if self.state is CameraState.ONLINE and now - self._last_seen_s() > self.offline_after_s:
            return self._go_offline(self._last_seen_s(), now)
        if now - self._last_report_s >= self.report_every_s:
            return self._report(HealthTrigger.PERIODIC, now)
        return None

    def achieved_fps(self, now: float) -> float:
        """Frames produced per second over the window (over the time since start while shorter)."""
        self._expire(now)
        span = min(self.window_s, now - self.started_at_s)
        return len(self._recent) / span if span > 0 else 0.0

    def _expire(self, now: float) -> None:
        while self._recent and self._recent[0][0] <= now - self.window_s:
            self._recent.popleft()

    def _report(self, trigger: HealthTrigger, now: float) -> HealthReport:
        fps = self.achieved_fps(now)
        ages = sorted(age for _, age in self._recent)
        outage = None
        if self.state is CameraState.OFFLINE and self.offline_since_s is not None:
            outage = max(0.0, now - self.offline_since_s)
        elif self._outage_ended_s is not None:
            outage = self._outage_ended_s
        report = HealthReport(
            report_seq=self._next_seq,
            reported_at_s=now,
            trigger=trigger,
            state=self.state,
            target_fps=self.target_fps,
            achieved_fps=fps,
            window_s=self.window_s,
            frames=self._since_report.frames,
            decode_errors=self._since_report.decode_errors,
            reconnects=self._since_report.reconnects,
            frames_total=self._total.frames,
            decode_errors_total=self._total.decode_errors,
            reconnects_total=self._total.reconnects,
            frame_age_ms_p50=_median(ages),
            frame_age_ms_max=ages[-1] if ages else None,
            last_frame_at_s=self.last_frame_at_s,
            offline_since_s=self.offline_since_s,
            outage_s=outage,
        )
        self._next_seq += 1
        self._last_report_s = now
        self._since_report = _Counts()
        self._outage_ended_s = None
        return report


def _median(sorted_values: list[float]) -> float | None:
    if not sorted_values:
        return None
    middle = len(sorted_values) // 2
    if len(sorted_values) % 2:
        return sorted_values[middle]
    return (sorted_values[middle - 1] + sorted_values[middle]) / 2
