"""Monitor stage: per-camera drift of the detections stream, model alerts out; alert reviews in.

Usage:
    framestream worker --stages monitor          # beside detect/alert/persist, or in its own worker
    FRAMESTREAM_MONITOR_REFERENCE_FRAMES=300 FRAMESTREAM_MONITOR_WINDOW_FRAMES=300 ...

One agent reads ``vision.detections.v1`` and ``vision.alert-reviews.v1`` as raw bytes. A frame's
detections feed ``processors.drift.DriftMonitor``; the drift events it returns become
``ModelAlert`` records on ``vision.model-alerts.v1`` (key: camera id), produced and confirmed
before the frame is released for commit (``streams/delivery.py``). A record that does not parse
goes to the dead-letter topic (``DeadLetterRule``), and processing goes on.

State is in memory, per worker: the reference window is the first ``reference_frames`` frames
*this worker* sees of a camera. A restart (or a rebalance that moves a camera's partition) starts
the camera again: its reference is rebuilt from the next frames consumed, which after a crash
are the uncommitted ones replayed, and no drift is reported until ``reference_frames +
window_frames`` frames have passed. A drift that was ongoing at the restart becomes the new
reference -- the trade-off for not persisting windows; the model alerts already raised stay in
ClickHouse. Model alert ids are deterministic for the same reference and window, so a replay
with unchanged state re-raises the same ids (deduplicated downstream).

Hard-example capture hooks in ``on_detections`` / ``on_review`` (see the marked lines):
everything either returns is produced together, in order, before the record is released.
"""

from __future__ import annotations

import logging
from datetime import datetime

import faust
from faust.types import EventT
from prometheus_client import Counter
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.drift import DriftConfig, DriftEvent, DriftMonitor, observation_of
from schemas import FrameDetections
from schemas.base import utc_now
from schemas.model_alerts import ModelAlert, model_alert_id_for
from schemas.reviews import AlertReview
from streams.context import WorkerContext, raw_topic
from streams.deadletter import DeadLetterRule, Rejection
from streams.delivery import Outgoing, hold, release
from streams.hard_examples import HardExampleCapture
from streams.records import parse_detections, process_one

log = logging.getLogger(__name__)
STAGE = "monitor"


class MonitorSettings(BaseSettings):
    """Drift detection (env ``FRAMESTREAM_MONITOR_*``); see ``processors/drift.py`` for the tests."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_MONITOR_", extra="forbid")

    reference_frames: int = Field(300, ge=2, le=100_000, description="first frames of a camera: its reference")
    window_frames: int = Field(300, ge=2, le=100_000, description="last frames compared with the reference")
    test_every: int = Field(50, ge=1, le=100_000, description="test a camera every this many frames")
    p_value: float = Field(1e-4, gt=0, lt=1, description="drift starts below this p-value ...")
    min_psi: float = Field(0.25, ge=0, description="... and at or above this PSI (effect size)")
    end_p_value: float = Field(1e-2, gt=0, lt=1, description="drift ends at or above this p-value, or ...")
    end_psi: float = Field(0.1, ge=0, description="... below this PSI")
    min_samples: int = Field(30, ge=2, description="fewer values in a window: that statistic is not tested")

    def drift_config(self) -> DriftConfig:
        """Raises ``ValueError`` for an inconsistent combination (e.g. end_psi above min_psi)."""
        return DriftConfig(**self.model_dump())


def parse_review(event: EventT) -> AlertReview | Rejection:
    try:
        return AlertReview.model_validate_json(event.message.value or b"")
    except ValidationError as error:
        return Rejection(f"invalid AlertReview: {error}", "ValidationError")


def describe(camera_id: str, event: DriftEvent) -> str:
    result, name = event.result, event.statistic.value
    if result.category is None:
        change = f"mean {result.reference_value:.3g} -> {result.current_value:.3g}"
    else:
        change = f"share of {result.category!r} {result.reference_value:.1%} -> {result.current_value:.1%}"
    what = "drifted" if event.state == "started" else "back near its reference"
    return (
        f"{camera_id}: {name} {what} ({change}; {result.test} {result.statistic:.3g}, "
        f"p={result.p_value:.2g}, PSI={result.psi:.2f})"
    )


def model_alert(camera_id: str, event: DriftEvent, frame: FrameDetections, raised_at: datetime) -> ModelAlert:
    """The message for one drift event; ``frame`` is the one whose arrival ran the test."""
    result = event.result
    (ref_first, ref_last), (win_first, win_last) = event.reference, event.window
    return ModelAlert(
        model_alert_id=model_alert_id_for(camera_id, event.statistic.value, win_last.frame_seq),
        state=event.state,
        camera_id=camera_id,
        statistic=event.statistic.value,
        test=result.test,
        test_statistic=result.statistic,
        p_value=result.p_value,
        effect_size=result.psi,
        reference_value=result.reference_value,
        current_value=result.current_value,
        category=result.category,
        reference_frames=event.reference_frames,
        window_frames=event.window_frames,
        reference_samples=result.reference_samples,
        window_samples=result.current_samples,
        reference_first_seq=ref_first.frame_seq,
        reference_last_seq=ref_last.frame_seq,
        reference_from=ref_first.captured_at,
        reference_to=ref_last.captured_at,
        window_first_seq=win_first.frame_seq,
        frame_seq=win_last.frame_seq,
        window_from=win_first.captured_at,
        captured_at=win_last.captured_at,
        model_name=frame.model_name,
        model_version=frame.model_version,
        raised_at=raised_at,
        message=describe(camera_id, event),
    )


class MonitorStage:
    def __init__(
        self,
        context: WorkerContext,
        drift: DriftMonitor,
        model_alerts: faust.TopicT,
        deadletter: faust.TopicT,
        capture: HardExampleCapture | None = None,
    ) -> None:
        self.context = context
        self.capture = capture  # hard examples (streams/hard_examples.py); None: drift only
        self.metrics = context.metrics
        self.drift_monitor = drift
        self.model_alerts_topic = model_alerts
        self.dead_letters = DeadLetterRule(deadletter, STAGE, self.metrics)
        self.retry = context.retry
        self.raised = Counter(
            "framestream_model_alerts_total",
            "Drift events raised by the monitor stage, by statistic and state (started, ended)",
            ["statistic", "state"],
            registry=self.metrics.registry,
        )

    async def process(self, event: EventT) -> None:
        await process_one(event, self._handle, step="monitor", dead_letters=self.dead_letters, retry=self.retry)

    async def _handle(self, event: EventT) -> list[Outgoing] | Rejection:
        if event.message.topic == self.context.topics.alert_reviews:
            review = parse_review(event)
            return review if isinstance(review, Rejection) else await self.on_review(review)
        message = parse_detections(event)
        return message if isinstance(message, Rejection) else await self.on_detections(message)

    async def on_detections(self, message: FrameDetections) -> list[Outgoing]:
        """Everything to produce for one frame: its model alerts (and, with capture, its hard examples)."""
        outgoing = self.drift(message)
        if self.capture is not None:  # after drift, so the flag includes this frame's test
            outgoing += await self.capture.on_detections(message, drifting=self.is_drifting(message.camera_id))
        return outgoing

    async def on_review(self, review: AlertReview) -> list[Outgoing]:
        """Everything to produce for one alert review (reviews are stored by the persist stage)."""
        outgoing: list[Outgoing] = []
        if self.capture is not None:
            outgoing += await self.capture.on_review(review)
        return outgoing

    def is_drifting(self, camera_id: str) -> bool:
        """Whether any statistic of the camera drifts now (as of its last test)."""
        return self.drift_monitor.is_drifting(camera_id)

    def drift(self, message: FrameDetections) -> list[Outgoing]:
        events = self.drift_monitor.update(message.camera_id, observation_of(message))
        raised_at = utc_now()
        records = []
        for event in events:
            alert = model_alert(message.camera_id, event, message, raised_at)
            self.raised.labels(statistic=alert.statistic, state=alert.state).inc()
            log.warning("model drift", extra={"model_alert_id": alert.model_alert_id, "detail": alert.message})
            records.append(
                Outgoing(self.model_alerts_topic, alert.camera_id.encode(), alert.model_dump_json().encode())
            )
        return records


def register(app: faust.App, context: WorkerContext, settings: MonitorSettings | None = None) -> MonitorStage:
    """Settings are read here, when the worker starts: a bad value stops it before it consumes anything."""
    config = (settings or MonitorSettings()).drift_config()
    log.info("drift monitor", extra={"config": repr(config)})
    topics = context.topics
    capture = HardExampleCapture(context, topic=raw_topic(app, topics.hard_examples))
    context.closers.append(capture.close)
    stage = MonitorStage(
        context, DriftMonitor(config), raw_topic(app, topics.model_alerts), raw_topic(app, topics.deadletter), capture
    )

    @app.agent(raw_topic(app, topics.detections, topics.alert_reviews), name=STAGE)
    async def monitor(stream: faust.StreamT) -> None:
        async for event in stream.events():
            hold([event])  # first, before any await: see streams/delivery.py
            await stage.process(event)
            await release(stream, [event])

    return stage
