"""Every topic name, defined once. A prefix isolates tests and tenants on a shared broker."""

from __future__ import annotations

from dataclasses import dataclass

FRAMES = "vision.frames.v1"
DETECTIONS = "vision.detections.v1"
ALERTS = "vision.alerts.v1"
MODEL_ALERTS = "vision.model-alerts.v1"
DEADLETTER = "vision.deadletter.v1"


@dataclass(frozen=True)
class TopicNames:
    """The concrete topic names for one deployment (``prefix`` + base name)."""

    prefix: str = ""

    @property
    def frames(self) -> str:
        return self.prefix + FRAMES

    @property
    def detections(self) -> str:
        return self.prefix + DETECTIONS

    @property
    def alerts(self) -> str:
        return self.prefix + ALERTS

    @property
    def model_alerts(self) -> str:
        return self.prefix + MODEL_ALERTS

    @property
    def deadletter(self) -> str:
        return self.prefix + DEADLETTER

    @property
    def cooldowns_changelog(self) -> str:
        """The alert stage's table changelog; named after the deployment, not the faust app id,
        so the alert state survives a change of stage layout. Created up front like the rest."""
        return f"{self.prefix}framestream.alert.cooldowns-changelog"

    def all(self) -> list[str]:
        return [self.frames, self.detections, self.alerts, self.model_alerts, self.deadletter]
