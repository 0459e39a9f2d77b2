"""Fixtures the integration tests share (the services' own fixtures are in tests/fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.clickhouse import ClickHouseTarget
from tests.integration.workers import WorkerStore, worker_store


@pytest.fixture
def store(clickhouse_target: ClickHouseTarget, tmp_path: Path) -> Iterator[WorkerStore]:
    """The ClickHouse a test's persist worker writes: its own chDB path, or a fresh database."""
    store = worker_store(clickhouse_target.dsn, clickhouse_target.embedded, tmp_path)
    yield store
    store.drop()
