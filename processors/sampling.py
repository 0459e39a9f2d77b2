"""Frame-rate sampling: which source frames to keep to approach a target fps.

Pure and stateful in one small class. Decisions use frame timestamps in
seconds, so the same sampler serves a live camera (wall-clock capture times)
and a video file (frame index / source fps, see ``source_timestamp``).
"""

from __future__ import annotations

import math

# A frame up to this fraction of the target interval early still counts as on time:
# timestamps computed as index / fps carry rounding error (3 * (1/30) < 0.1).
_EARLY_TOLERANCE = 0.1


class FpsSampler:
    """Keeps frames so that kept timestamps are at least ~1/target_fps apart, without drift.

    The schedule advances by exactly one interval per kept frame, so a 30 fps
    source sampled at 10 fps keeps every third frame and a 12 fps source keeps
    10 of every 12. A gap longer than an interval (a stalled camera) re-anchors
    the schedule instead of releasing a burst, and a timestamp that goes
    backwards (a looping file, a clock step) restarts it.
    """

    def __init__(self, target_fps: float) -> None:
        if not math.isfinite(target_fps) or target_fps <= 0:
            raise ValueError(f"target_fps must be a positive number, got {target_fps!r}")
        self.target_fps = float(target_fps)
        self.interval_s = 1.0 / self.target_fps
        self._next_due: float | None = None
        self._last_seen: float | None = None

    def keep(self, timestamp_s: float) -> bool:
        """True when the frame at ``timestamp_s`` should be kept."""
        if not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp must be finite, got {timestamp_s!r}")
        restarted = self._last_seen is not None and timestamp_s < self._last_seen
        self._last_seen = timestamp_s
        if self._next_due is None or restarted:
            self._next_due = timestamp_s + self.interval_s
            return True
        if timestamp_s < self._next_due - _EARLY_TOLERANCE * self.interval_s:
            return False
        late_by = timestamp_s - self._next_due
        self._next_due = (self._next_due if late_by < self.interval_s else timestamp_s) + self.interval_s
        return True

    def reset(self) -> None:
        self._next_due = None
        self._last_seen = None


def source_timestamp(frame_index: int, source_fps: float) -> float:
    """Media time in seconds of frame ``frame_index`` of a constant-rate source."""
    if source_fps <= 0:
        raise ValueError(f"source_fps must be positive, got {source_fps!r}")
    if frame_index < 0:
        raise ValueError(f"frame_index must be >= 0, got {frame_index!r}")
    return frame_index / source_fps
