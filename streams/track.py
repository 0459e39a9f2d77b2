"""Track stage: per-frame detections in, ``FrameTracks`` (tracked objects and scene events) and
track-rule alerts out; each camera's tracker state in a faust table.

Detections are keyed by camera, so one worker owns a camera at a time and sees its frames in
order. The state (``processors.tracking.TrackerState``: the ByteTrack object with its id counter,
the per-track scene memory, the count windows) is a RocksDB-backed table keyed by camera whose
changelog (``framestream.track.state-changelog``, compacted, created up front) is partitioned
like the detections: it moves with the camera's partition and is restored after a restart.

Per frame: track, produce the tracks record and the alerts and wait for their delivery, then
store the new state (as the alert stage does with its cooldowns). So after a crash:

- the state is at most one step behind what was delivered: the frames after it are tracked
  again from that very state, and ByteTrack is deterministic, so they carry the same track,
  crossing, visit and alert ids as before (the persist stage and ClickHouse deduplicate them);
- a frame at or before the stored state's last frame was delivered already: it is skipped
  (counted as outcome "replayed"), never re-tracked from a later state.
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT
from pydantic import ValidationError

from processors.rules import RuleEvaluator
from processors.tracking import SceneTracker, TrackerConfig, TrackerState
from schemas import Alert, FrameDetections
from schemas.base import utc_now
from schemas.tracks import FrameTracks
from streams.context import WorkerContext, camera_table, raw_topic
from streams.deadletter import DeadLetterRule, Rejection
from streams.delivery import Outgoing, hold, produce_in_order, release
from streams.records import parse_detections, process_one
from streams.snapshots import SnapshotSettings, SnapshotTaker

log = logging.getLogger(__name__)
STATE_TABLE = "tracker_state"
STAGE = "track"


def state_table(app: faust.App, context: WorkerContext) -> faust.Table:
    return camera_table(
        app,
        context,
        STATE_TABLE,
        context.topics.tracker_changelog,
        default=None,
        help="per camera: tracker state (processors.tracking.TrackerState as JSON)",
    )


def tracker_config(context: WorkerContext) -> TrackerConfig:
    worker = context.worker
    return TrackerConfig(
        frame_rate=worker.track_frame_rate,
        lost_track_s=worker.track_lost_s,
        activation_score=worker.track_activation_score,
        high_score=worker.track_activation_score,
    )


class TrackStage:
    def __init__(
        self,
        context: WorkerContext,
        tracker: SceneTracker,
        table: faust.Table,
        tracks: faust.TopicT,
        alerts: faust.TopicT,
        deadletter: faust.TopicT,
        snapshots: SnapshotTaker | None = None,
    ) -> None:
        self.metrics = context.metrics
        self.snapshots = snapshots
        self.tracker = tracker
        self.table = table
        self.tracks_topic = tracks
        self.alerts_topic = alerts
        self.dead_letters = DeadLetterRule(deadletter, STAGE, self.metrics)
        self.retry = context.retry

    async def process(self, event: EventT) -> None:
        await process_one(event, self._handle, step="track", dead_letters=self.dead_letters, retry=self.retry)

    async def _handle(self, event: EventT) -> list[Outgoing] | Rejection | str:
        frame = parse_detections(event)
        if isinstance(frame, Rejection):
            return frame
        outcome = await self._track(frame)  # produces its records itself: the state is stored after their delivery
        return "replayed" if outcome == "replayed" else []  # replayed: skipped, see the module doc

    async def _track(self, frame: FrameDetections) -> str:
        stored = self._stored_state(frame.camera_id)
        step = self.tracker.update(frame, stored, tracked_at=utc_now())
        if step.tracks is None:
            log.info("replayed frame skipped", extra={"event_id": frame.event_id, "last_seq": step.state.last_seq})
            return step.outcome
        if step.outcome == "restarted":
            log.warning("tracker state started anew", extra={"camera_id": frame.camera_id, "seq": frame.frame_seq})
        alerts = step.alerts
        if alerts and self.snapshots is not None:
            alerts = await self.snapshots.attach(frame, alerts)  # retries transient faults; never drops an alert
        records = [self._record(self.tracks_topic, frame.camera_id, step.tracks)]
        records += [self._record(self.alerts_topic, frame.camera_id, alert) for alert in alerts]
        await produce_in_order(records, retry=self.retry)
        for alert in alerts:
            self.metrics.alerts.labels(rule_id=alert.rule_id).inc()
            log.info("alert", extra={"alert_id": alert.alert_id, "severity": alert.severity.value})
        self.table[frame.camera_id] = step.state.model_dump(mode="json")
        return step.outcome

    def _stored_state(self, camera_id: str) -> TrackerState | None:
        value = self.table.get(camera_id)
        if value is None:
            return None
        try:
            return TrackerState.model_validate(value)
        except ValidationError as error:  # e.g. written by an older layout: start anew, with a new generation
            log.error("unreadable tracker state; starting anew", extra={"camera_id": camera_id, "error": str(error)})
            return None

    @staticmethod
    def _record(topic: faust.TopicT, camera_id: str, message: FrameTracks | Alert) -> Outgoing:
        return Outgoing(topic, camera_id.encode(), message.model_dump_json().encode())


def register(app: faust.App, context: WorkerContext) -> TrackStage:
    rules = context.rules
    if rules is None:  # loaded by the worker command, so a bad file stops it before it touches the broker
        raise ValueError("the track stage needs its rules file: WorkerContext.rules is None")
    log.info(
        "scene loaded",
        extra={
            "lines": [line.name for line in rules.lines],
            "zones": [zone.name for zone in rules.zones],
            "track_rules": [rule.id for rule in rules.track_rules],
        },
    )
    topics = context.topics
    snapshots = None
    if rules.track_rules and SnapshotSettings().enabled:
        snapshots = SnapshotTaker(context, RuleEvaluator(rules), scene_zones=rules.zones)
        context.closers.append(snapshots.close)
    stage = TrackStage(
        context,
        SceneTracker(rules, tracker_config(context)),
        state_table(app, context),
        raw_topic(app, topics.tracks),
        raw_topic(app, topics.alerts),
        raw_topic(app, topics.deadletter),
        snapshots,
    )

    @app.agent(raw_topic(app, topics.detections), name=STAGE)
    async def track(stream: faust.StreamT) -> None:
        async for event in stream.events():
            hold([event])  # first, before any await: see streams/delivery.py
            await stage.process(event)
            await release(stream, [event])

    return stage
