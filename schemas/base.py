"""Shared base for messages: frozen, strict about unknown fields, versioned."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

SCHEMA_VERSION = 1


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (UTC)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]

# Camera ids become Kafka keys, ClickHouse keys and parts of event ids: keep them plain.
CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


# Raw bytes in JSON as standard base64 (RFC 4648 section 4). pydantic's own "base64" output is the
# URL-safe alphabet, which common decoders (Python's b64decode, Java's Base64.getDecoder) corrupt or
# reject; reading accepts both alphabets (val_json_bytes below).
Base64Bytes = Annotated[
    bytes,
    PlainSerializer(lambda raw: base64.b64encode(raw).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class Message(BaseModel):
    # allow_inf_nan=False: NaN/inf would be written as JSON null and the message would not read back.
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, ser_json_bytes="base64", val_json_bytes="base64"
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
