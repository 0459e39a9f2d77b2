"""Runtime configuration, read from the environment once in ``main()`` and passed down.

Every endpoint is configurable so the same workers run against the embedded
stack (local broker, local tritonserver, chDB) or the production one (Apache Kafka,
a Triton container, a ClickHouse server). Each lower layer declares the settings it
needs (``streams.kafka_config.KafkaSettings``, ``streams.inference.DetectorClientSettings``,
``streams.sinks.clickhouse_db.ClickHouseSettings``); this module composes them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.inference import DetectorClientSettings
from streams.kafka_config import BrokerProfile, KafkaSettings
from streams.sinks.clickhouse_db import ClickHouseSettings

__all__ = ["BrokerProfile", "ClickHouseSettings", "EmbeddedBroker", "KafkaSettings", "Settings", "TritonSettings"]

REPO_ROOT = Path(__file__).resolve().parent.parent


class EmbeddedBroker(StrEnum):
    """Which broker the embedded stack starts when no bootstrap servers are configured.
    ``auto``: Apache Kafka where Java 17+ and its jars exist, else Tansu (with a warning)."""

    AUTO = "auto"
    KAFKA = "kafka"
    KAFKA_CLUSTER = "kafka-cluster"
    TANSU = "tansu"


class TritonSettings(DetectorClientSettings):
    """The detect stage's client settings plus what the embedded tritonserver launcher needs."""

    model_repository: Path = REPO_ROOT / "triton_models"
    venv: Path = Field(REPO_ROOT / ".venv-triton", description="virtualenv holding nvidia-pytriton and numpy<2")


class Settings(BaseSettings):
    """All of framestream's configuration. Nested groups read their own env prefixes."""

    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_", extra="forbid")

    data_dir: Path = Field(REPO_ROOT / "var", description="embedded services' state, logs and outputs")
    cameras_file: Path = REPO_ROOT / "samples" / "cameras.yaml"
    rules_file: Path = REPO_ROOT / "samples" / "rules.yaml"
    log_level: str = "INFO"
    embedded_broker: EmbeddedBroker = Field(EmbeddedBroker.AUTO, description="kafka | kafka-cluster | tansu | auto")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    clickhouse: ClickHouseSettings = Field(default_factory=ClickHouseSettings)
    eval_dataset: Path | None = Field(None, description="the deployment's labelled set, for promote's accuracy gate")
    eval_format: str = Field("coco", description="label format of eval_dataset: coco, yolo, voc or cvat")
