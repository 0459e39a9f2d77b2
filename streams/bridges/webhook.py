"""Webhook bridge: each alert POSTed as JSON until the receiver answers 2xx.

The body is the alert's JSON exactly as on ``vision.alerts.v1``. Headers: ``Idempotency-Key``
and ``X-Framestream-Alert-Id`` carry the alert id for deduplication; with a secret set,
``X-Framestream-Signature: sha256=<hex>`` is the HMAC-SHA256 of the body, so the receiver
can tell the sender is the bridge. 408, 425, 429 and 5xx answers and connection failures
are transient (retried, ``Retry-After`` ignored in favour of the bridge's backoff); any
other answer refuses the alert for good, and it becomes a dead letter with the status.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum
from pathlib import Path

import requests
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import Alert
from streams.bridges.loop import DeliveryRefused, DeliveryUnavailable

TRANSIENT_STATUSES = frozenset({408, 425, 429})


class WebhookSettings(BaseSettings):
    """The webhook bridge (env ``FRAMESTREAM_WEBHOOK_*``)."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_WEBHOOK_", extra="forbid")

    url: str = Field("", description="the receiver's http(s) URL")
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for X-Framestream-Signature")
    timeout_s: float = Field(10.0, gt=0)
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify an https receiver (default: system CAs)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        return url


class Answer(str, Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def classify(status: int) -> Answer:
    if 200 <= status < 300:
        return Answer.DELIVERED
    if status in TRANSIENT_STATUSES or status >= 500:
        return Answer.RETRY
    return Answer.REFUSED


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request_headers(alert: Alert, body: bytes, secret: bytes | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": alert.alert_id,
        "X-Framestream-Alert-Id": alert.alert_id,
    }
    if secret is not None:
        headers["X-Framestream-Signature"] = signature(secret, body)
    return headers


class WebhookPoster:
    """An ``AlertSink`` over one HTTP session (keep-alive)."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        if not settings.url:
            raise ValueError("no webhook URL: set FRAMESTREAM_WEBHOOK_URL or pass --url")
        self.settings = settings
        self.secret = settings.secret.get_secret_value().encode() if settings.secret is not None else None
        self.session = requests.Session()
        self.verify: str | bool = str(settings.tls_ca_file) if settings.tls_ca_file is not None else True

    def deliver(self, alert: Alert, payload: bytes) -> None:
        try:
            response = self.session.post(
                self.settings.url,
                data=payload,
                headers=request_headers(alert, payload, self.secret),
                timeout=self.settings.timeout_s,
                verify=self.verify,
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            raise DeliveryUnavailable(f"webhook unreachable: {type(error).__name__}") from error
        answer = classify(response.status_code)
        if answer is Answer.RETRY:
            raise DeliveryUnavailable(f"webhook answered {response.status_code}")
        if answer is Answer.REFUSED:
            raise DeliveryRefused(f"webhook answered {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self.session.close()
