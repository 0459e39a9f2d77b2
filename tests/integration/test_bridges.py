"""The alert bridges against real servers: Apache Kafka, Eclipse Mosquitto, an HTTP receiver.

Each test produces alerts (and one record that is not an alert) to the alerts topic and runs
a bridge over them: every alert arrives with its id, through an outage of the other side,
and what cannot be delivered becomes a dead letter with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer
from pydantic import SecretStr

from schemas import Alert, DeadLetter
from streams.bridges.loop import AlertBridge, AlertSink, BridgeCounts
from streams.bridges.mqtt import MqttPublisher, MqttSettings
from streams.bridges.webhook import WebhookPoster, WebhookSettings
from streams.kafka_config import KafkaSettings, consumer_config, producer_config
from streams.retry import RetryPolicy
from streams.topics import TopicNames
from tests.factories import make_alert
from tests.fixtures.mqtt import Mosquitto

FAST_RETRY = RetryPolicy(initial_s=0.1, max_s=1.0, jitter=0.1)
NOT_AN_ALERT = b'{"alert_id": "half an alert"}'


def produce(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = Producer(producer_config(kafka, "test-bridge-feeder"))
    for value in values:
        producer.produce(topic, value, key=b"cam-1")
    assert producer.flush(30) == 0


def alerts(first: int, count: int, rule_id: str = "person-detected") -> list[Alert]:
    return [make_alert(rule_id, "cam-1", seq) for seq in range(first, first + count)]


def dead_letters(kafka: KafkaSettings, topics: TopicNames, expected: int, timeout_s: float = 30) -> list[DeadLetter]:
    consumer = Consumer(consumer_config(kafka, f"{topics.prefix}dead-letter-reader"))
    consumer.subscribe([topics.deadletter])
    found: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found.append(DeadLetter.model_validate_json(message.value()))
    finally:
        consumer.close()
    return found


@contextmanager
def running_bridge(kafka: KafkaSettings, make_sink: Callable[[], AlertSink]) -> Iterator[BridgeCounts]:
    """A bridge on a thread for the duration of the block; stopped as SIGTERM would stop it."""
    stop = threading.Event()
    bridge = AlertBridge(kafka, make_sink(), stop, retry=FAST_RETRY)
    thread = threading.Thread(target=bridge.run, name="bridge", daemon=True)
    thread.start()
    try:
        yield bridge.counts
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the bridge did not stop within 60 s"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.1)


# --- MQTT ---------------------------------------------------------------------------------------


@dataclass
class Subscriber:
    """A persistent-session MQTT 5 subscriber: what the broker queued while it was down arrives later."""

    port: int
    received: list[tuple[str, str, Alert]] = field(default_factory=list)  # topic, user property, alert
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber", protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=properties)
        self.client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: object, _props: object
    ) -> None:
        client.subscribe("framestream/alerts/#", qos=1)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        user_properties = dict(getattr(message.properties, "UserProperty", []) or [])
        with self.lock:
            self.received.append(
                (message.topic, user_properties.get("alert_id", ""), Alert.model_validate_json(message.payload))
            )

    def alert_ids(self) -> set[str]:
        with self.lock:
            return {alert.alert_id for _topic, _property, alert in self.received}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_bridge_delivers_every_alert_with_its_id_through_a_broker_outage(
    kafka_settings: KafkaSettings, topics: TopicNames, mosquitto: Mosquitto
) -> None:
    before, during, after = alerts(0, 10), alerts(10, 10), alerts(20, 5)
    settings = MqttSettings(port=mosquitto.port, client_id="test-bridge", publish_timeout_s=2)
    subscriber = Subscriber(mosquitto.port)
    try:
        wait_until(subscriber.client.is_connected, 15, "the subscriber to connect")
        produce(kafka_settings, topics.alerts, [a.model_dump_json().encode() for a in before] + [NOT_AN_ALERT])
        with running_bridge(kafka_settings, lambda: MqttPublisher(settings)) as counts:
            wait_until(lambda: subscriber.alert_ids() >= {a.alert_id for a in before}, 60, "the first alerts")
            mosquitto.stop()  # the broker goes away: the bridge must wait, not skip
            produce(kafka_settings, topics.alerts, [a.model_dump_json().encode() for a in during])
            time.sleep(3)
            assert counts.delivered == len(before)
            mosquitto.start()
            wait_until(lambda: subscriber.alert_ids() >= {a.alert_id for a in during}, 90, "alerts after the outage")
        # A new bridge (same group) carries on from the committed offsets.
        produce(kafka_settings, topics.alerts, [a.model_dump_json().encode() for a in after])
        with running_bridge(kafka_settings, lambda: MqttPublisher(settings)):
            wait_until(lambda: subscriber.alert_ids() >= {a.alert_id for a in after}, 60, "alerts to a new bridge")
        wanted = {a.alert_id for a in before + during + after}
        assert subscriber.alert_ids() == wanted
        for topic, property_id, alert in subscriber.received:
            assert property_id == alert.alert_id
            assert topic == f"framestream/alerts/{alert.camera_id}/{alert.rule_id}"
        letters = dead_letters(kafka_settings, topics, expected=1)
        assert [(letter.stage, letter.original) for letter in letters] == [("bridge", NOT_AN_ALERT)]
        assert "not a valid alert" in letters[0].reason
    finally:
        subscriber.close()


# --- webhook ------------------------------------------------------------------------------------

SECRET = b"test-hmac-key"
REFUSED_RULE = "refused-rule"


@dataclass
class Receiver:
    """A real HTTP server: 503 for its first two requests, 400 for one rule, 200 otherwise."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    count = len(receiver.requests)
                status = 503 if count <= 2 else 400 if json.loads(body)["rule_id"] == REFUSED_RULE else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"no" if status == 400 else b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        return Handler

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [
                json.loads(body)["alert_id"]
                for _headers, body in self.requests[2:]
                if json.loads(body)["rule_id"] != REFUSED_RULE
            ]


def test_webhook_bridge_retries_5xx_signs_every_body_and_dead_letters_a_refusal(
    kafka_settings: KafkaSettings, topics: TopicNames
) -> None:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good, refused = alerts(0, 8), alerts(100, 1, rule_id=REFUSED_RULE)
        values = [a.model_dump_json().encode() for a in good[:4] + refused + good[4:]] + [NOT_AN_ALERT]
        produce(kafka_settings, topics.alerts, values)
        settings = WebhookSettings(
            url=f"http://127.0.0.1:{server.server_port}/alerts", secret=SecretStr(SECRET.decode())
        )
        with running_bridge(kafka_settings, lambda: WebhookPoster(settings)) as counts:
            wait_until(lambda: counts.delivered + counts.dead_letters == len(values), 60, "every record handled")
        assert sorted(receiver.accepted_ids()) == sorted(a.alert_id for a in good)  # each once: none skipped
        for headers, body in receiver.requests:
            alert_id = json.loads(body)["alert_id"]
            assert headers["Idempotency-Key"] == headers["X-Framestream-Alert-Id"] == alert_id
            expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Framestream-Signature"], expected)
        letters = sorted(dead_letters(kafka_settings, topics, expected=2), key=lambda letter: letter.reason)
        assert [letter.stage for letter in letters] == ["bridge", "bridge"]
        assert "webhook answered 400" in letters[1].reason and refused[0].alert_id in letters[1].reason
        assert "not a valid alert" in letters[0].reason
    finally:
        server.shutdown()
        server.server_close()
