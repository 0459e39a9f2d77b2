"""``framestream bridge mqtt|webhook``: pass ``vision.alerts.v1`` on to an MQTT broker or a webhook.

At least once, with the alert id on every delivery for deduplication (see ``streams/bridges``).
Settings come from the environment (``FRAMESTREAM_MQTT_*``, ``FRAMESTREAM_WEBHOOK_*``; secrets
such as the MQTT password or the webhook's HMAC key only from there); the flags override the
non-secret ones. Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging

from framestream.settings import Settings
from framestream.signals import stop_on_signals
from streams.bridges.loop import AlertBridge, AlertSink

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bridge", help="pass alerts on to MQTT or a webhook, at least once")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    mqtt = kinds.add_parser("mqtt", help="publish each alert to an MQTT broker (MQTT 5, QoS 1 by default)")
    mqtt.add_argument("--host", help="broker host (env FRAMESTREAM_MQTT_HOST)")
    mqtt.add_argument("--port", type=int, help="broker port (env FRAMESTREAM_MQTT_PORT)")
    mqtt.add_argument("--topic-template", help="e.g. 'framestream/alerts/{camera_id}/{rule_id}'")
    mqtt.set_defaults(handler=run)
    webhook = kinds.add_parser("webhook", help="POST each alert to an http(s) URL")
    webhook.add_argument("--url", help="receiver URL (env FRAMESTREAM_WEBHOOK_URL)")
    webhook.set_defaults(handler=run)


def build_sink(args: argparse.Namespace) -> AlertSink:
    """The sink for ``args.kind``; invalid settings raise ``ValueError``/``ValidationError`` naming the field."""
    overrides = {
        name: value
        for name in ("host", "port", "topic_template", "url")
        if (value := getattr(args, name, None)) is not None
    }
    if args.kind == "mqtt":
        from streams.bridges.mqtt import MqttPublisher, MqttSettings

        return MqttPublisher(MqttSettings(**overrides))
    from streams.bridges.webhook import WebhookPoster, WebhookSettings

    return WebhookPoster(WebhookSettings(**overrides))


def run(args: argparse.Namespace, settings: Settings) -> int:
    stop = stop_on_signals()
    sink = build_sink(args)
    counts = AlertBridge(settings.kafka, sink, stop).run()
    print(f"bridge {sink.name}: {counts.delivered} alerts delivered, {counts.dead_letters} dead letters")
    return 0
