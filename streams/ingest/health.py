"""Camera health inside ingest: one ``CameraHealthTracker`` per camera, fed from the camera
threads and a ticking health thread, turned into ``CameraHealth`` messages and Prometheus metrics.

    health = IngestHealth(cameras, run_id="1733020000000", report_every_s=10)
    message = health.observe("lobby", FrameProduced(captured_at_s, produced_at_s))  # None, or a report
    for message in health.tick(): ...   # every second or so, from one thread
    for message in health.stop(): ...   # the final report of every camera

Thread-safe: one lock around the trackers (their updates take microseconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from processors.camera_health import (
    CameraHealthTracker,
    FrameProduced,
    HealthReport,
    Observation,
    Stopped,
    Tick,
)
from schemas.camera_health import CameraHealth, CameraState
from streams.ingest import metrics
from streams.ingest.cameras import Camera


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def health_message(camera_id: str, run_id: str, report: HealthReport) -> CameraHealth:
    return CameraHealth(
        health_id=f"{camera_id}:{run_id}:{report.report_seq}",
        camera_id=camera_id,
        run_id=run_id,
        report_seq=report.report_seq,
        reported_at=datetime.fromtimestamp(report.reported_at_s, UTC),
        trigger=report.trigger,
        state=report.state,
        target_fps=report.target_fps,
        achieved_fps=report.achieved_fps,
        window_s=report.window_s,
        frames=report.frames,
        decode_errors=report.decode_errors,
        reconnects=report.reconnects,
        frames_total=report.frames_total,
        decode_errors_total=report.decode_errors_total,
        reconnects_total=report.reconnects_total,
        frame_age_ms_p50=report.frame_age_ms_p50,
        frame_age_ms_max=report.frame_age_ms_max,
        last_frame_at=_utc(report.last_frame_at_s),
        offline_since=_utc(report.offline_since_s),
        outage_s=report.outage_s,
    )


class IngestHealth:
    """The health of every camera of one ingest run."""

    def __init__(
        self,
        cameras: Sequence[Camera],
        run_id: str,
        *,
        report_every_s: float = 10.0,
        window_s: float | None = None,
        offline_after_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_id = run_id
        self._clock = clock
        now = clock()
        self._trackers = {
            camera.id: CameraHealthTracker(
                camera.fps,
                now,
                window_s=window_s or report_every_s,
                report_every_s=report_every_s,
                offline_after_s=offline_after_s,
            )
            for camera in cameras
        }
        self._lock = threading.Lock()
        self.latest: dict[str, CameraHealth] = {}
        self._outages: dict[str, list[float]] = {camera.id: [] for camera in cameras}
        for camera in cameras:
            metrics.CAMERA_TARGET_FPS.labels(camera.id).set(camera.fps)
            metrics.CAMERA_ONLINE.labels(camera.id).set(1)
            metrics.CAMERA_OFFLINE_SECONDS.labels(camera.id).set(0)

    def outages(self) -> dict[str, list[float]]:
        """Seconds of every ended outage, per camera."""
        with self._lock:
            return {camera_id: list(seconds) for camera_id, seconds in self._outages.items()}

    def observe(self, camera_id: str, observation: Observation) -> CameraHealth | None:
        """Account for one observation of a camera; the report it makes due, if any."""
        now = self._clock()
        if isinstance(observation, FrameProduced):
            metrics.FRAME_AGE_SECONDS.labels(camera_id).observe(
                max(0.0, observation.produced_at_s - observation.captured_at_s)
            )
        with self._lock:
            report = self._trackers[camera_id].update(observation, now)
            return self._publish(camera_id, report, now)

    def tick(self) -> list[CameraHealth]:
        """Reports due by time (periodic, or a camera silent for too long); refreshes the gauges."""
        return self._all(Tick())

    def stop(self) -> list[CameraHealth]:
        """The final report of every camera."""
        return self._all(Stopped())

    def _all(self, observation: Observation) -> list[CameraHealth]:
        now = self._clock()
        messages = []
        with self._lock:
            for camera_id, tracker in self._trackers.items():
                message = self._publish(camera_id, tracker.update(observation, now), now)
                if message is not None:
                    messages.append(message)
        return messages

    def _publish(self, camera_id: str, report: HealthReport | None, now: float) -> CameraHealth | None:
        """Metrics from the tracker's state; the message for ``report`` (under the lock)."""
        tracker = self._trackers[camera_id]
        online = tracker.state is CameraState.ONLINE
        metrics.CAMERA_ONLINE.labels(camera_id).set(1 if online else 0)
        metrics.CAMERA_ACHIEVED_FPS.labels(camera_id).set(tracker.achieved_fps(now))
        offline_s = 0.0 if online or tracker.offline_since_s is None else max(0.0, now - tracker.offline_since_s)
        metrics.CAMERA_OFFLINE_SECONDS.labels(camera_id).set(offline_s)
        if report is None:
            return None
        if report.state is CameraState.ONLINE and report.outage_s is not None:
            self._outages[camera_id].append(report.outage_s)
            metrics.CAMERA_OUTAGE_SECONDS.labels(camera_id).observe(report.outage_s)
            metrics.CAMERA_LAST_OUTAGE_SECONDS.labels(camera_id).set(report.outage_s)
        message = health_message(camera_id, self.run_id, report)
        self.latest[camera_id] = message
        return message
