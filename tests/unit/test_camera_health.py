"""Camera health accounting: fps against target, frame age, errors, reconnects, outages."""

from __future__ import annotations

import pytest

from processors.camera_health import (
    CameraHealthTracker,
    DecodeFailed,
    FrameProduced,
    HealthReport,
    Reconnecting,
    Stopped,
    StreamLost,
    Tick,
)
from schemas.camera_health import CameraState, HealthTrigger

START = 1_000.0


def feed_frames(tracker: CameraHealthTracker, start: float, count: int, fps: float, age_s: float = 0.02) -> float:
    """``count`` frames ``1/fps`` apart from ``start``, each produced ``age_s`` after capture; the last time."""
    now = start
    for index in range(count):
        captured = start + index / fps
        now = captured + age_s
        tracker.update(FrameProduced(captured_at_s=captured, produced_at_s=now), now)
    return now


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"target_fps": 0}, "target_fps"),
        ({"target_fps": float("nan")}, "target_fps"),
        ({"target_fps": 5, "window_s": -1}, "window_s"),
        ({"target_fps": 5, "report_every_s": 0}, "report_every_s"),
        ({"target_fps": 5, "offline_after_s": 0}, "offline_after_s"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        CameraHealthTracker(started_at_s=START, **kwargs)


@pytest.mark.parametrize(
    ("target_fps", "offline_after_s", "expected"),
    [(10, None, 5.0), (0.5, None, 10.0), (10, 2.0, 2.0)],
)
def test_offline_threshold(target_fps: float, offline_after_s: float | None, expected: float) -> None:
    tracker = CameraHealthTracker(target_fps, START, offline_after_s=offline_after_s)
    assert tracker.offline_after_s == expected


@pytest.mark.parametrize(
    ("fps_in", "seconds", "expected_fps"),
    [(10, 10, 10.0), (5, 10, 5.0), (10, 20, 10.0), (2, 10, 2.0)],
)
def test_achieved_fps_over_the_window(fps_in: float, seconds: float, expected_fps: float) -> None:
    tracker = CameraHealthTracker(10, START, window_s=10, report_every_s=1000)
    last = feed_frames(tracker, START, int(fps_in * seconds), fps_in)
    assert tracker.achieved_fps(last) == pytest.approx(expected_fps, rel=0.12)


def test_a_periodic_report_counts_since_the_previous_one() -> None:
    tracker = CameraHealthTracker(10, START, window_s=5, report_every_s=5)
    reports = []
    now = START
    for index in range(100):  # 10 s at 10 fps, produced 30 ms after capture
        captured = START + index / 10
        now = captured + 0.03
        reports.append(tracker.update(FrameProduced(captured, now), now))
        if index == 12:
            reports.append(tracker.update(DecodeFailed(), now))
    periodic = [r for r in reports if r is not None]
    assert [r.trigger for r in periodic] == [HealthTrigger.PERIODIC]
    first = periodic[0]
    assert first.report_seq == 0 and first.state is CameraState.ONLINE
    assert (first.frames, first.decode_errors, first.reconnects) == (51, 1, 0)  # frames 0..50: 50 is due
    assert first.frame_age_ms_p50 == pytest.approx(30.0) and first.frame_age_ms_max == pytest.approx(30.0)
    assert first.achieved_fps == pytest.approx(10.0, rel=0.05)
    final = tracker.update(Stopped(), now)
    assert isinstance(final, HealthReport) and final.trigger is HealthTrigger.FINAL
    assert (final.report_seq, final.frames, final.decode_errors, final.frames_total) == (1, 49, 0, 100)
    assert final.decode_errors_total == 1


def test_a_lost_stream_goes_offline_at_once_and_the_outage_is_reported_on_return() -> None:
    tracker = CameraHealthTracker(10, START, report_every_s=1000)
    last = feed_frames(tracker, START, 20, 10)  # last frame captured at START + 1.9
    lost = tracker.update(StreamLost(), last + 0.1)
    assert lost is not None and lost.trigger is HealthTrigger.STATE_CHANGE and lost.state is CameraState.OFFLINE
    assert lost.offline_since_s == pytest.approx(START + 1.9)
    assert lost.outage_s == pytest.approx(0.12, abs=0.01)
    for attempt in range(3):
        assert tracker.update(Reconnecting(), last + 1 + attempt) is None
    assert tracker.update(StreamLost(), last + 3.5) is None  # already offline: no second report
    back = tracker.update(FrameProduced(START + 9.9, START + 9.95), START + 9.95)
    assert back is not None and back.state is CameraState.ONLINE and back.trigger is HealthTrigger.STATE_CHANGE
    assert back.outage_s == pytest.approx(8.0) and tracker.last_outage_s == pytest.approx(8.0)
    assert (back.reconnects, back.reconnects_total, back.offline_since_s) == (3, 3, None)
    # The outage is told once; later reports carry none.
    later = tracker.update(Stopped(), START + 10)
    assert later is not None and later.outage_s is None and later.reconnects == 0


@pytest.mark.parametrize(
    ("silence_s", "offline"),
    [(4.9, False), (5.1, True)],
)
def test_a_silent_camera_goes_offline_after_the_threshold(silence_s: float, offline: bool) -> None:
    tracker = CameraHealthTracker(10, START, report_every_s=1000)
    last = feed_frames(tracker, START, 10, 10, age_s=0.0)  # last captured at START + 0.9
    report = tracker.update(Tick(), START + 0.9 + silence_s)
    assert (report is not None) == offline
    assert tracker.state is (CameraState.OFFLINE if offline else CameraState.ONLINE)
    if report is not None:
        assert report.offline_since_s == pytest.approx(START + 0.9) and report.outage_s == pytest.approx(silence_s)
    assert last == pytest.approx(START + 0.9)


def test_a_camera_that_never_delivers_goes_offline_from_its_start() -> None:
    tracker = CameraHealthTracker(10, START, report_every_s=1000)
    assert tracker.update(Tick(), START + 4) is None
    report = tracker.update(Tick(), START + 6)
    assert report is not None and report.state is CameraState.OFFLINE
    assert report.offline_since_s == START and report.last_frame_at_s is None
    assert report.frame_age_ms_p50 is None and report.achieved_fps == 0.0


def test_old_frames_leave_the_window() -> None:
    tracker = CameraHealthTracker(10, START, window_s=2, report_every_s=1000)
    last = feed_frames(tracker, START, 20, 10)
    assert tracker.achieved_fps(last) == pytest.approx(10.0, rel=0.1)
    assert tracker.achieved_fps(last + 10) == 0.0
