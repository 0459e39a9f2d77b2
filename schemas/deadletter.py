"""Dead letters: any stage's bad input, with the original bytes and why it was rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import SCHEMA_VERSION, Base64Bytes, Message, UtcDatetime


class DeadLetter(Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    stage: Literal["ingest", "detect", "track", "alert", "persist", "monitor", "bridge"]
    reason: str = Field(description="human-readable cause, e.g. the validation error or the decoder's message")
    error_type: str = Field(description="exception class or Triton status code")
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    key: Base64Bytes | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    original: Base64Bytes = Field(description="the record value exactly as received (base64 in JSON)")
    failed_at: UtcDatetime
