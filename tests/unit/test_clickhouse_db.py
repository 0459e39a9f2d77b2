"""Pure parts of the ClickHouse service: migration files, SQL rendering, error classification."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError, ProgrammingError

from streams.sinks.clickhouse_db import (
    MIGRATIONS_DIR,
    MigrationError,
    is_row_error,
    is_transient,
    load_migrations,
    quote_identifier,
    redact_dsn,
    render,
)


def test_render_fills_placeholders_and_splits_at_line_end_semicolons() -> None:
    sql = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE {database}.t (m Map(String, String) DEFAULT map('a;b', 'c'))\n"
        "TTL d + INTERVAL {ttl_days} DAY;\n"
        "SELECT {param:String};\n"
    )
    assert render(sql, database="db1", ttl_days=7) == [
        "CREATE TABLE db1.t (m Map(String, String) DEFAULT map('a;b', 'c'))\nTTL d + INTERVAL 7 DAY",
        "SELECT {param:String}",
    ]


def test_the_shipped_migrations_are_ordered_idempotent_statements() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    for migration in migrations:
        for statement in render(migration.sql, database="db", ttl_days=1):
            assert "IF NOT EXISTS" in statement.split("(")[0], f"{migration.path.name}: {statement[:60]}"


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"1_first.sql": ""}, "named NNNN_lower_snake_name.sql"),
        ({"0001_First.sql": ""}, "named NNNN_lower_snake_name.sql"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "version 0001 already used by 0001_a.sql"),
    ],
)
def test_misnamed_or_duplicate_migration_files_are_refused(tmp_path: Path, files: dict[str, str], problem: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=problem):
        load_migrations(tmp_path)


def test_the_checksum_is_of_the_template_not_the_rendering() -> None:
    first = load_migrations(MIGRATIONS_DIR)[0]
    assert len(first.checksum) == 64 and "{database}" in first.sql


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("clickhouse://writer:s3cret@db:8123/framestream", "clickhouse://writer:***@db:8123/framestream"),
        ("clickhouse://db:8123/framestream", "clickhouse://db:8123/framestream"),
        ("chdb:///var/lib/fs/clickhouse", "chdb:///var/lib/fs/clickhouse"),
    ],
)
def test_dsn_passwords_never_reach_the_logs(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


@pytest.mark.parametrize("name", ["framestream", "fs_test_01", "_x"])
def test_plain_identifiers_pass(name: str) -> None:
    assert quote_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a; DROP TABLE x", "db.table"])
def test_other_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid ClickHouse identifier"):
        quote_identifier(name)


@pytest.mark.parametrize(
    ("error", "transient", "row"),
    [
        (OperationalError("Error HTTPConnectionPool: Connection refused"), True, False),
        (ConnectionResetError(), True, False),
        (TimeoutError(), True, False),
        (DatabaseError("Too many parts", code=252), True, False),
        (DatabaseError("Memory limit exceeded", code=241), True, False),
        (DatabaseError("HTTP driver received HTTP status 503, server response: busy"), True, False),
        (OperationalError("Code: 60. UNKNOWN_TABLE", code=60), False, False),
        (DatabaseError("Code: 516. AUTHENTICATION_FAILED", code=516), False, False),
        (ProgrammingError("The client has been closed"), False, False),
        (DatabaseError("Code: 469. VIOLATED_CONSTRAINT", code=469), False, True),
        (DatabaseError("Code: 53. TYPE_MISMATCH", code=53), False, True),
        (DataError("Unable to create native array for column `a`"), False, True),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False, True),
        (struct.error("ushort format requires 0 <= number <= 65535"), False, True),
        (RuntimeError("chDB directory held elsewhere"), False, False),
    ],
)
def test_errors_are_classified(error: BaseException, transient: bool, row: bool) -> None:
    assert is_transient(error) is transient
    assert is_row_error(error) is row


def test_a_wrapped_connection_error_is_transient() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            raise RuntimeError("request failed") from cause
    except RuntimeError as error:
        assert is_transient(error)
