"""The migrations on a real ClickHouse engine: idempotent, history-checked, TTL from settings."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from streams.sinks.clickhouse_db import (
    MIGRATIONS_DIR,
    SERVER_USERS_FILE,
    MigrationError,
    load_migrations,
    migrate,
    render,
)
from streams.sinks.rows import TABLES
from tests.fixtures.clickhouse import TEST_TTL_DAYS, ClickHouseTarget

pytestmark = pytest.mark.integration
TTL_TABLES = {
    "frames",
    "detections",
    "alerts",
    "dead_letters",
    "detections_per_minute",
    "frames_per_minute",
    "hard_examples",
    "model_alerts",
    "alert_reviews",
    "camera_health",
    "classifications",
    "model_agreement",
    "track_points",
    "line_crossings",
    "zone_visits",
    "zone_occupancy",
    "line_crossings_per_hour",
    "track_spans",
}


@pytest.fixture
def engine(clickhouse_target: ClickHouseTarget) -> Iterator[Client]:
    """A client with no default database; every database a test names here is dropped afterwards."""
    client = clickhouse_target.connect()
    client.created = []  # type: ignore[attr-defined]
    yield client
    for name in client.created:  # type: ignore[attr-defined]
        client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
    client.close()


def fresh_name(engine: Client) -> str:
    name = f"fs_schema_{uuid.uuid4().hex[:10]}"
    engine.created.append(name)  # type: ignore[attr-defined]
    return name


def ttl_days_by_table(client: Client, database: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, extract(engine_full, 'toIntervalDay\\\\((\\\\d+)\\\\)') FROM system.tables "
        "WHERE database = {db:String} AND engine_full LIKE '%TTL%'",
        parameters={"db": database},
    ).result_rows
    return dict(rows)


def test_first_run_applies_every_migration_and_a_rerun_is_a_no_op(engine: Client) -> None:
    database = fresh_name(engine)
    versions = [migration.version for migration in load_migrations()]
    assert migrate(engine, database, 30) == versions and versions[:2] == ["0001", "0002"]
    tables_before = engine.query(
        "SELECT name, metadata_modification_time FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": database},
    ).result_rows
    assert migrate(engine, database, 30) == []
    assert migrate(engine, database, 30) == []
    tables_after = engine.query(
        "SELECT name, metadata_modification_time FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": database},
    ).result_rows
    assert tables_after == tables_before
    history = engine.query(f"SELECT version, checksum FROM {database}.schema_migrations ORDER BY version").result_rows
    assert history == [(m.version, m.checksum) for m in load_migrations()]
    names = {name for name, _ in tables_after}
    assert names >= TTL_TABLES | {"schema_migrations", "detections_per_minute_mv", "frames_per_minute_mv"}


def test_a_changed_applied_migration_is_refused_naming_the_file(engine: Client, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    database = fresh_name(engine)
    migrate(engine, database, 30, directory)
    edited = directory / "0002_rollups.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"0002_rollups\.sql: changed after it was applied"):
        migrate(engine, database, 30, directory)


def test_a_new_migration_is_applied_alone(engine: Client, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    database = fresh_name(engine)
    migrate(engine, database, 30, directory)
    (directory / "0099_camera_notes.sql").write_text(
        "CREATE TABLE IF NOT EXISTS {database}.camera_notes (camera_id String, note String)\n"
        "ENGINE = MergeTree ORDER BY camera_id;\n"
    )
    assert migrate(engine, database, 30, directory) == ["0099"]
    assert int(engine.command(f"EXISTS TABLE {database}.camera_notes")) == 1


def test_history_from_newer_code_is_refused(engine: Client, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    database = fresh_name(engine)
    migrate(engine, database, 30, directory)
    (directory / "0002_rollups.sql").unlink()
    with pytest.raises(MigrationError, match="migration 0002 applied, which this code does not have"):
        migrate(engine, database, 30, directory)


def test_ttl_comes_from_settings_and_follows_a_change_on_the_next_start(engine: Client) -> None:
    database = fresh_name(engine)
    migrate(engine, database, 30)
    assert ttl_days_by_table(engine, database) == dict.fromkeys(TTL_TABLES, "30")
    assert migrate(engine, database, 7) == []
    assert ttl_days_by_table(engine, database) == dict.fromkeys(TTL_TABLES, "7")


def test_expired_rows_are_removed_by_the_ttl(engine: Client) -> None:
    """Rows older than the retention disappear on the next merge; recent ones stay."""
    database = fresh_name(engine)
    migrate(engine, database, 1)
    engine.command(
        f"INSERT INTO {database}.alerts (alert_id, rule_id, severity, camera_id, frame_seq, event_id, captured_at, "
        "raised_at, class_name, score, x1, y1, x2, y2, object_count, message) VALUES "
        "('old', 'r', 'info', 'c', 1, 'c:1', now64() - INTERVAL 3 DAY, now64(), 'person', 0.9, 0, 0, 1, 1, 1, ''),"
        "('new', 'r', 'info', 'c', 2, 'c:2', now64(), now64(), 'person', 0.9, 0, 0, 1, 1, 1, '')"
    )
    engine.command(f"OPTIMIZE TABLE {database}.alerts FINAL")
    assert engine.query(f"SELECT alert_id FROM {database}.alerts").result_rows == [("new",)]


def test_tables_are_keyed_for_per_camera_time_ranges_and_deduplicate_on_the_id(clickhouse_client: Client) -> None:
    keys = dict(
        (name, (engine, partition, sorting))
        for name, engine, partition, sorting in clickhouse_client.query(
            "SELECT name, engine, partition_key, sorting_key FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
    )
    for table in TABLES:
        engine, partition, sorting = keys[table.name]
        assert engine == "ReplacingMergeTree"
        assert partition == f"toDate({table.time_column})"
        assert sorting.split(", ")[-1] == table.id_column
    assert keys["frames"][2] == "camera_id, captured_at, event_id"
    assert keys["detections_per_minute"][0] == "AggregatingMergeTree"


def test_sink_rows_match_the_table_columns(clickhouse_client: Client) -> None:
    """Every row field is a column, and every column a row leaves out has a default (or is an alias)."""
    columns = clickhouse_client.query(
        "SELECT table, name, type, default_kind FROM system.columns WHERE database = currentDatabase()"
    ).result_rows
    for table in TABLES:
        described = {name: (kind, default) for tbl, name, kind, default in columns if tbl == table.name}
        assert set(table.columns) <= set(described), table.name
        left_out = {name for name in described if name not in table.columns}
        assert all(described[name][1] in ("DEFAULT", "ALIAS", "MATERIALIZED") for name in left_out), table.name
    types = {(tbl, name): kind for tbl, name, kind, _ in columns}
    assert types[("detections", "camera_id")] == "LowCardinality(String)"
    assert types[("detections", "class_name")] == "LowCardinality(String)"
    assert types[("frames", "captured_at")] == "DateTime64(3, 'UTC')"


def test_server_users_file_parses_on_this_engine(engine: Client) -> None:
    """chDB has no users to create, but its parser is the server's: every statement must parse."""
    statements = render(SERVER_USERS_FILE.read_text(), database="framestream")
    assert len(statements) >= 10
    for statement in statements:
        formatted = engine.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
        assert formatted.split()[0] in {"CREATE", "GRANT", "ALTER"}
    joined = " ".join(statements)
    assert "{writer_password:String}" in joined and "{grafana_password:String}" in joined
    assert "readonly = 2" in joined


def test_test_databases_use_the_long_test_retention(clickhouse_client: Client) -> None:
    assert set(ttl_days_by_table(clickhouse_client, clickhouse_client.database).values()) == {str(TEST_TTL_DAYS)}


def test_a_chdb_directory_held_by_another_process_is_reported_clearly(tmp_path: Path) -> None:
    """One process per chDB directory: a second one gets told who to stop, not an engine trace."""
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import clickhouse_connect, sys, time\n"
            f"c = clickhouse_connect.get_client(dsn='chdb://{data_dir / 'clickhouse'}'); c.command('SELECT 1')\n"
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        env = {**os.environ, "FRAMESTREAM_DATA_DIR": str(data_dir)}
        env.pop("FRAMESTREAM_CLICKHOUSE_DSN", None)
        done = subprocess.run(
            [sys.executable, "-m", "framestream.cli", "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2
    assert "is open in another process (a persist worker?)" in done.stderr
