"""The bridges' pure parts: MQTT topic templates, webhook answers, signatures and headers."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from streams.bridges.mqtt import MqttSettings, check_topic_template, mqtt_topic
from streams.bridges.webhook import Answer, WebhookSettings, classify, request_headers, signature
from tests.factories import make_alert


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("framestream/alerts/{camera_id}/{rule_id}", None),
        ("site-7/{severity}/{class_name}", None),
        ("alerts", None),
        ("alerts/{camera}", "unknown field"),
        ("alerts/+/{camera_id}", "wildcard"),
        ("alerts/#", "wildcard"),
        ("   ", "empty"),
    ],
)
def test_topic_templates_are_checked_before_the_bridge_starts(template: str, problem: str | None) -> None:
    if problem is None:
        check_topic_template(template)
    else:
        with pytest.raises(ValueError, match=problem):
            check_topic_template(template)


def test_a_bad_template_in_the_environment_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMESTREAM_MQTT_TOPIC_TEMPLATE", "alerts/{zone}")
    with pytest.raises(ValidationError, match="topic_template"):
        MqttSettings()


def test_the_topic_is_rendered_from_the_alert() -> None:
    alert = make_alert("person-in-yard", "yard-2", 7)
    assert mqtt_topic("fs/{camera_id}/{rule_id}/{severity}", alert) == "fs/yard-2/person-in-yard/warning"


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, Answer.DELIVERED),
        (204, Answer.DELIVERED),
        (408, Answer.RETRY),
        (425, Answer.RETRY),
        (429, Answer.RETRY),
        (500, Answer.RETRY),
        (503, Answer.RETRY),
        (301, Answer.REFUSED),  # requests follows redirects; one left over is not a delivery
        (400, Answer.REFUSED),
        (401, Answer.REFUSED),
        (404, Answer.REFUSED),
        (422, Answer.REFUSED),
    ],
)
def test_webhook_answers(status: int, answer: Answer) -> None:
    assert classify(status) is answer


def test_headers_carry_the_alert_id_and_an_hmac_of_the_exact_body() -> None:
    alert = make_alert()
    body = alert.model_dump_json().encode()
    headers = request_headers(alert, body, b"key")
    assert headers["Idempotency-Key"] == headers["X-Framestream-Alert-Id"] == alert.alert_id
    assert headers["X-Framestream-Signature"] == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert signature(b"key", body + b" ") != headers["X-Framestream-Signature"]
    assert "X-Framestream-Signature" not in request_headers(alert, body, None)


@pytest.mark.parametrize("url", ["ftp://example.org/hook", "example.org/hook"])
def test_a_webhook_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        WebhookSettings(url=url)


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = WebhookSettings(url="https://example.org/hook", secret="s3cr3t-value")
    mqtt = MqttSettings(username="bridge", password="pa55-value")
    assert "s3cr3t-value" not in repr(settings) and "pa55-value" not in repr(mqtt)
