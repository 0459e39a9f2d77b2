"""Alert stage: per-frame detections in, alerts out, per-camera cooldowns in a faust table.

The rules file is loaded once, when the stage is registered, so a bad file stops
the worker before it consumes anything (``ConfigFileError`` names file, field and
problem). The cooldown state is a RocksDB-backed table keyed by camera id whose
changelog is partitioned like the detections topic: a camera's state lives with
its partition, moves with it on a rebalance and is restored from the changelog
after a restart.

Per frame: evaluate, produce the alerts and wait for their delivery, then store
the new cooldown state. A crash between the two re-raises the same alert ids on
replay (deduplicated downstream) rather than losing an alert.
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT

from processors.rules import CooldownState, RuleEvaluator
from schemas import Alert, FrameDetections
from schemas.base import utc_now
from streams.context import WorkerContext, camera_table, raw_topic
from streams.deadletter import DeadLetterRule, Rejection
from streams.delivery import Outgoing, hold, produce_in_order, release
from streams.records import parse_detections, process_one
from streams.snapshots import SnapshotSettings, SnapshotTaker

log = logging.getLogger(__name__)
COOLDOWNS_TABLE = "cooldowns"
STAGE = "alert"


def cooldowns_table(app: faust.App, context: WorkerContext) -> faust.Table:
    return camera_table(
        app,
        context,
        COOLDOWNS_TABLE,
        context.topics.cooldowns_changelog,
        default=dict,
        help="per camera: rule id -> captured_at of its last alert",
    )


class AlertStage:
    def __init__(
        self,
        context: WorkerContext,
        evaluator: RuleEvaluator,
        table: faust.Table,
        alerts: faust.TopicT,
        deadletter: faust.TopicT,
        snapshots: SnapshotTaker | None = None,
    ) -> None:
        self.context = context
        self.snapshots = snapshots
        self.metrics = context.metrics
        self.evaluator = evaluator
        self.table = table
        self.alerts_topic = alerts
        self.dead_letters = DeadLetterRule(deadletter, STAGE, self.metrics)
        self.retry = context.retry

    async def process(self, event: EventT) -> None:
        await process_one(event, self._handle, step="evaluate", dead_letters=self.dead_letters, retry=self.retry)

    async def _handle(self, event: EventT) -> list[Outgoing] | Rejection:
        frame = parse_detections(event)
        if isinstance(frame, Rejection):
            return frame
        await self._evaluate(frame)  # produces its alerts itself: the cooldowns are stored after their delivery
        return []

    async def _evaluate(self, frame: FrameDetections) -> None:
        state: CooldownState = dict(self.table[frame.camera_id])
        evaluation = self.evaluator.evaluate(frame, state, raised_at=utc_now())
        alerts = evaluation.alerts
        if alerts and self.snapshots is not None:
            alerts = await self.snapshots.attach(frame, alerts)  # retries transient faults; never drops an alert
        if alerts:
            await produce_in_order([self._record(alert) for alert in alerts], retry=self.retry)
            for alert in alerts:
                self.metrics.alerts.labels(rule_id=alert.rule_id).inc()
                log.info("alert", extra={"alert_id": alert.alert_id, "severity": alert.severity.value})
        if evaluation.state != state:
            self.table[frame.camera_id] = evaluation.state

    def _record(self, alert: Alert) -> Outgoing:
        return Outgoing(self.alerts_topic, alert.camera_id.encode(), alert.model_dump_json().encode())


def register(app: faust.App, context: WorkerContext) -> None:
    rules = context.rules
    if rules is None:  # loaded by the worker command, so a bad file stops it before it touches the broker
        raise ValueError("the alert stage needs its rules: WorkerContext.rules is None")
    log.info("rules loaded", extra={"rules": [rule.id for rule in rules.rules]})
    evaluator = RuleEvaluator(rules)
    snapshots = SnapshotTaker(context, evaluator) if SnapshotSettings().enabled else None
    if snapshots is not None:
        context.closers.append(snapshots.close)
    stage = AlertStage(
        context,
        evaluator,
        cooldowns_table(app, context),
        raw_topic(app, context.topics.alerts),
        raw_topic(app, context.topics.deadletter),
        snapshots,
    )

    @app.agent(raw_topic(app, context.topics.detections), name=STAGE)
    async def alert(stream: faust.StreamT) -> None:
        async for event in stream.events():
            hold([event])  # first, before any await: see streams/delivery.py
            await stage.process(event)
            await release(stream, [event])
