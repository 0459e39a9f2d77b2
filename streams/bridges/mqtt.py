"""MQTT bridge: each alert published once acknowledged (QoS 1 PUBACK, or QoS 2), MQTT 5.

The payload is the alert's JSON exactly as on ``vision.alerts.v1`` (``schemas/json/alert.v1``);
the alert id also travels as the MQTT 5 user property ``alert_id``, so a subscriber can
deduplicate without parsing. The topic comes from a template over the alert's fields, e.g.
``framestream/alerts/{camera_id}/{rule_id}``. paho's network thread reconnects with backoff
on its own; while it is away, ``deliver`` raises ``DeliveryUnavailable`` and the bridge waits.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import Alert
from streams.bridges.loop import DeliveryUnavailable

log = logging.getLogger(__name__)

# Fields a topic template may use: plain identifiers that cannot hold MQTT's wildcards.
TEMPLATE_FIELDS = frozenset({"camera_id", "rule_id", "severity", "class_name"})


class MqttSettings(BaseSettings):
    """The MQTT bridge (env ``FRAMESTREAM_MQTT_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_MQTT_", extra="forbid")

    host: str = Field("127.0.0.1", description="MQTT broker host")
    port: int = Field(1883, ge=1, le=65535)
    topic_template: str = Field(
        "framestream/alerts/{camera_id}/{rule_id}", description=f"fields: {', '.join(sorted(TEMPLATE_FIELDS))}"
    )
    qos: Literal[1, 2] = Field(1, description="1: at least once (PUBACK); 2: exactly once between bridge and broker")
    client_id: str = Field("framestream-bridge", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = Field(None, description="from the environment or a secret file, never from code")
    tls_ca_file: Path | None = Field(None, description="CA bundle: connect over TLS and verify the broker")
    publish_timeout_s: float = Field(10.0, gt=0, description="wait for the acknowledgement before retrying")

    @field_validator("topic_template")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        check_topic_template(template)
        return template


def check_topic_template(template: str) -> None:
    """``ValueError`` naming the problem: unknown fields, wildcards, or an empty template."""
    if not template.strip():
        raise ValueError("topic template is empty")
    if "+" in template or "#" in template:
        raise ValueError(f"topic template {template!r} contains an MQTT wildcard (+ or #)")
    used = {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None}
    unknown = used - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"topic template {template!r} uses unknown field(s) {sorted(unknown)}; "
            f"choose from {', '.join(sorted(TEMPLATE_FIELDS))}"
        )


def mqtt_topic(template: str, alert: Alert) -> str:
    return template.format(
        camera_id=alert.camera_id, rule_id=alert.rule_id, severity=alert.severity.value, class_name=alert.class_name
    )


class MqttPublisher:
    """An ``AlertSink`` over one paho client (its own network thread)."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5)
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else None
            self.client.username_pw_set(settings.username, password)
        if settings.tls_ca_file is not None:
            self.client.tls_set(ca_certs=str(settings.tls_ca_file))
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.connect_async(settings.host, settings.port)
        self.client.loop_start()

    def deliver(self, alert: Alert, payload: bytes) -> None:
        if not self.client.is_connected():
            raise DeliveryUnavailable(f"MQTT broker {self.settings.host}:{self.settings.port} not connected")
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = ("alert_id", alert.alert_id)
        properties.ContentType = "application/json"
        info = self.client.publish(
            mqtt_topic(self.settings.topic_template, alert), payload, qos=self.settings.qos, properties=properties
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryUnavailable(f"MQTT publish not queued: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(self.settings.publish_timeout_s)
        except RuntimeError as error:  # paho: the connection dropped while waiting
            raise DeliveryUnavailable(f"MQTT publish interrupted: {error}") from error
        if not info.is_published():
            raise DeliveryUnavailable(f"no MQTT acknowledgement within {self.settings.publish_timeout_s:g} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
