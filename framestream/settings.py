"""Runtime configuration, read from the environment once in ``main()`` and passed down.

Every endpoint is configurable so the same workers run against the embedded
stack (Tansu, local tritonserver, chDB) or the production one (Apache Kafka,
a Triton container, a ClickHouse server).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class BrokerProfile(str, Enum):
    """Broker quirks to work around. ``tansu`` is the embedded broker; see DESIGN.md."""

    KAFKA = "kafka"
    TANSU = "tansu"


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_KAFKA_", extra="forbid")

    bootstrap_servers: str = Field("", description="host:port list; empty starts the embedded broker")
    profile: BrokerProfile = Field(BrokerProfile.TANSU, description="tansu: one record per batch, low session timeout")
    topic_prefix: str = Field("", description="prepended to every topic name (isolates tests and tenants)")
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=5)
    retention_ms: int = Field(6 * 3600 * 1000, ge=60_000)


class TritonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_TRITON_", extra="forbid")

    url: str = Field("", description="host:port of Triton's gRPC endpoint; empty starts the local tritonserver")
    model_name: str = "detector"
    model_repository: Path = REPO_ROOT / "triton_models"
    venv: Path = Field(REPO_ROOT / ".venv-triton", description="virtualenv holding nvidia-pytriton and numpy<2")
    max_in_flight: int = Field(4, ge=1, le=256, description="concurrent requests per detect worker")
    timeout_s: float = Field(30.0, gt=0)
    score_threshold: float = Field(0.35, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.6, ge=0.0, le=1.0)


class ClickHouseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_CLICKHOUSE_", extra="forbid")

    dsn: str = Field("", description="clickhouse://user@host:8123/db, or chdb:///path; empty uses chDB under data_dir")
    database: str = "framestream"
    username: str = "framestream_writer"
    password: SecretStr = SecretStr("")
    ttl_days: int = Field(90, ge=1, le=3650)


class Settings(BaseSettings):
    """All of framestream's configuration. Nested groups read their own env prefixes."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_", extra="forbid")

    data_dir: Path = Field(REPO_ROOT / "var", description="embedded services' state, logs and outputs")
    cameras_file: Path = REPO_ROOT / "samples" / "cameras.yaml"
    rules_file: Path = REPO_ROOT / "samples" / "rules.yaml"
    log_level: str = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
