"""ClickHouse: connecting (a server, or chDB in-process) and applying the schema migrations.

The schema lives in ``infra/clickhouse/migrations/NNNN_name.sql``. ``migrate``
applies the files in order, records each applied version with a checksum in
``<database>.schema_migrations`` and refuses to run when an applied file has
changed since: a migration, once applied somewhere, is history. The retention
(TTL days) is not part of that history: it comes from the settings and is
re-applied on every start when it differs from what the tables carry.

chDB note: one process may open one chDB path at a time, and no two processes
may share a path. The process that runs the persist stage owns the path.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError, ProgrammingError
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "infra" / "clickhouse" / "migrations"
SERVER_USERS_FILE = REPO_ROOT / "infra" / "clickhouse" / "server" / "users.sql"

_MIGRATION_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_TRANSIENT_HTTP_STATUS = re.compile(r"HTTP status (?:429|502|503|504)\b")
_TTL_DAYS = re.compile(r"\bTTL (?P<expr>.+?) \+ toIntervalDay\((?P<days>\d+)\)")

# Error codes a retry can outlive: the server is busy, restarting or out of
# resources for the moment. Anything else (syntax, types, unknown tables) is permanent.
TRANSIENT_ERROR_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE (connection cut mid-response)
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY (replica or disk temporarily read-only)
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE (disk full: rows wait until an operator frees space)
        252,  # TOO_MANY_PARTS ("merges are processing significantly slower than inserts")
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)


# Errors about the database itself, not about any row: a missing table, column or database,
# bad credentials, no privilege. Every row would fail the same way.
SYSTEMIC_ERROR_CODES = frozenset(
    {
        8,  # THERE_IS_NO_COLUMN
        16,  # NO_SUCH_COLUMN_IN_TABLE
        36,  # BAD_ARGUMENTS
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        76,  # CANNOT_OPEN_FILE
        81,  # UNKNOWN_DATABASE
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
    }
)
# Raised by clickhouse-connect while serialising a value its column cannot take.
_SERIALISATION_ERRORS = (ValueError, TypeError, AttributeError, OverflowError, struct.error)


class ClickHouseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMESTREAM_CLICKHOUSE_", extra="forbid")

    dsn: str = Field("", description="clickhouse://user@host:8123/db, or chdb:///path; empty uses chDB under data_dir")
    database: str = "framestream"
    username: str = "framestream_writer"
    password: SecretStr = SecretStr("")
    password_file: Path | None = Field(None, description="a file holding the password (a mounted secret)")
    ttl_days: int = Field(90, ge=1, le=3650)

    @model_validator(mode="after")
    def _password_from_file(self) -> ClickHouseSettings:
        if self.password_file is not None and not self.password.get_secret_value():
            self.password = SecretStr(read_secret_file(self.password_file))
        return self


def read_secret_file(path: Path) -> str:
    """A mounted secret's value (its first line); the error names the file, never the content."""
    try:
        value = path.read_text().strip("\r\n")
    except OSError as error:
        raise ValueError(f"cannot read the secret file {path}: {error.strerror}") from None
    if not value:
        raise ValueError(f"the secret file {path} is empty")
    return value


class ChdbBusyError(RuntimeError):
    """The chDB directory is held by another process."""


class MigrationError(RuntimeError):
    """The database's migration history disagrees with the files (or a file is malformed)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        """Checksum of the template text, so it is the same whatever database or TTL it is rendered for."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced, fit for logs."""
    parsed = urlparse(dsn)
    if parsed.password is None:
        return dsn
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


def chdb_dsn(data_dir: Path) -> str:
    path = (Path(data_dir) / "clickhouse").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"chdb://{path}"


def connect(settings: ClickHouseSettings, data_dir: Path) -> Client:
    """A client for the configured ClickHouse: the DSN's server, or chDB under ``data_dir`` when the DSN is empty.

    Credentials in the DSN win; otherwise ``settings.username``/``password`` are used.
    The client's default database is set when that database already exists
    (before the first ``migrate`` it does not).
    """
    dsn = settings.dsn or chdb_dsn(data_dir)
    log.info("connecting to ClickHouse", extra={"dsn": redact_dsn(dsn)})
    try:
        if dsn.startswith("chdb:") or urlparse(dsn).username:
            client = clickhouse_connect.get_client(dsn=dsn)
        else:
            client = clickhouse_connect.get_client(
                dsn=dsn, username=settings.username, password=settings.password.get_secret_value()
            )
    except ProgrammingError as error:
        if dsn.startswith("chdb:") and chdb_path_locked(Path(urlparse(dsn).path)):
            raise ChdbBusyError(
                f"{redact_dsn(dsn)} is open in another process (a persist worker?): one process per chDB "
                "directory. Stop it, or point FRAMESTREAM_CLICKHOUSE_DSN at a ClickHouse server."
            ) from error
        raise
    if database_exists(client, settings.database):
        client.database = settings.database
    return client


def chdb_path_locked(path: Path) -> bool:
    """Whether another process holds the chDB directory (ClickHouse flocks its ``status`` file)."""
    try:
        with open(path / "status", "rb") as status:
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(status, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def is_embedded(client: Client) -> bool:
    """True for a chDB (in-process) client, where users, roles and passwords do not exist."""
    return str(getattr(client, "uri", "")).startswith("chdb:")


def database_exists(client: Client, database: str) -> bool:
    return int(client.command("EXISTS DATABASE " + quote_identifier(database))) == 1


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same operation later can succeed (server down, busy, overloaded).

    A server error carries its code; a connection-level failure has none (clickhouse-connect
    raises OperationalError for those, or a plain DatabaseError naming the HTTP status).
    """
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, DatabaseError):
        if error.code is not None:
            return error.code in TRANSIENT_ERROR_CODES
        return isinstance(error, OperationalError) or bool(_TRANSIENT_HTTP_STATUS.search(str(error)))
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_transient(cause)


def is_row_error(error: BaseException) -> bool:
    """Whether some rows' values (not the database, not the connection) can explain a permanent error:
    then the batch is worth narrowing down to the messages causing it."""
    if isinstance(error, DatabaseError):
        if error.code is not None:
            return error.code not in SYSTEMIC_ERROR_CODES and error.code not in TRANSIENT_ERROR_CODES
        return isinstance(error, DataError)  # client-side: a value its column type cannot hold
    return isinstance(error, _SERIALISATION_ERRORS)


def quote_identifier(name: str) -> str:
    """Validate a database/table name; they are interpolated into DDL, so only plain identifiers pass."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid ClickHouse identifier {name!r}: use letters, digits and underscores")
    return name


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; a misnamed file or a repeated version is an error."""
    migrations: dict[str, Migration] = {}
    for path in sorted(Path(directory).glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake_name.sql")
        version = match["version"]
        if version in migrations:
            raise MigrationError(f"{path}: version {version} already used by {migrations[version].path.name}")
        migrations[version] = Migration(version, match["name"], path, path.read_text(encoding="utf-8"))
    return [migrations[version] for version in sorted(migrations)]


def render(sql: str, **values: str | int) -> list[str]:
    """Fill ``{placeholder}``s and split into statements (each ends with ``;`` at the end of a line).

    Plain replacement, not ``str.format``: SQL has braces of its own (query parameters, maps).
    """
    for name, value in values.items():
        sql = sql.replace("{" + name + "}", str(value))
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements = _STATEMENT_END.split("\n".join(lines))
    return [statement.strip() for statement in statements if statement.strip()]


def migrate(client: Client, database: str, ttl_days: int, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet applied to ``database``; return their versions (empty when up to date)."""
    quote_identifier(database)
    if ttl_days < 1:
        raise ValueError(f"ttl_days must be at least 1 (got {ttl_days})")
    migrations = load_migrations(directory)
    _ensure_history_table(client, database)
    applied = _applied_checksums(client, database)
    _check_history(migrations, applied, database)
    newly_applied = []
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in render(migration.sql, database=database, ttl_days=ttl_days):
            client.command(statement)
        client.insert(
            f"{database}.schema_migrations",
            [(migration.version, migration.name, migration.checksum)],
            column_names=("version", "name", "checksum"),
        )
        log.info("applied migration", extra={"database": database, "migration": migration.path.name})
        newly_applied.append(migration.version)
    apply_ttl(client, database, ttl_days)
    client.database = database
    return newly_applied


def _ensure_history_table(client: Client, database: str) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"""CREATE TABLE IF NOT EXISTS {database}.schema_migrations
        (version String, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = ReplacingMergeTree ORDER BY version"""
    )


def _applied_checksums(client: Client, database: str) -> dict[str, str]:
    result = client.query(f"SELECT version, checksum FROM {database}.schema_migrations FINAL")
    return {str(version): str(checksum) for version, checksum in result.result_rows}


def _check_history(migrations: list[Migration], applied: dict[str, str], database: str) -> None:
    known = {migration.version: migration for migration in migrations}
    for version, checksum in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"database {database!r} has migration {version} applied, which this code does not have: "
                "it was migrated by a newer framestream"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.path}: changed after it was applied to database {database!r} "
                f"(recorded sha256 {checksum[:12]}, file now {migration.checksum[:12]}); "
                "add a new migration instead of editing an applied one"
            )


def apply_ttl(client: Client, database: str, ttl_days: int) -> list[str]:
    """Set every table's ``TTL <expr> + INTERVAL n DAY`` to ``ttl_days``; return the tables changed."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {database:String} AND engine_full LIKE '%TTL %'",
        parameters={"database": database},
    ).result_rows
    changed = []
    for table, engine_full in rows:
        match = _TTL_DAYS.search(engine_full)
        if match is None or int(match["days"]) == ttl_days:
            continue
        client.command(f"ALTER TABLE {database}.{table} MODIFY TTL {match['expr']} + INTERVAL {ttl_days} DAY")
        log.info("changed retention", extra={"table": f"{database}.{table}", "ttl_days": ttl_days})
        changed.append(table)
    return changed


def apply_server_users(
    client: Client,
    database: str,
    writer_password: SecretStr,
    grafana_password: SecretStr,
    path: Path = SERVER_USERS_FILE,
) -> None:
    """Create or update the ``framestream_writer`` and ``grafana_reader`` users on a ClickHouse server."""
    if is_embedded(client):
        raise ValueError("users and roles exist only on a ClickHouse server, not in chDB")
    for name, secret in (("writer", writer_password), ("grafana", grafana_password)):
        if len(secret.get_secret_value()) < 12:
            raise ValueError(f"the {name} password must have at least 12 characters")
    template = path.read_text(encoding="utf-8")
    statements = render(template, database=quote_identifier(database))
    for statement in statements:
        # Passwords go in as bound parameters, never into SQL text that could be logged.
        client.command(
            statement,
            parameters={
                "writer_password": writer_password.get_secret_value(),
                "grafana_password": grafana_password.get_secret_value(),
            }
            if "_password:" in statement
            else None,
        )
    log.info("applied server users", extra={"database": database, "file": str(path)})
