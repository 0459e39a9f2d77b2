"""``framestream migrate``: apply the ClickHouse migrations (and, on a server, the users) to the
configured ClickHouse. Idempotent: run it on every deploy; a no-op when up to date.

With ``--server-users`` it connects as the administrator and also creates or updates the
``framestream_writer`` user (password: ``FRAMESTREAM_CLICKHOUSE_PASSWORD``, the one the
workers log in with) and the read-only ``grafana_reader`` (``CLICKHOUSE_READER_PASSWORD``,
the one Grafana's datasource reads). The administrator is ``CLICKHOUSE_ADMIN_USER``
(default ``admin``) with ``CLICKHOUSE_ADMIN_PASSWORD``: the names docker-compose.yml uses.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framestream.settings import Settings
from streams.sinks.clickhouse_db import (
    ChdbBusyError,
    MigrationError,
    apply_server_users,
    connect,
    migrate,
    read_secret_file,
)

log = logging.getLogger(__name__)


class ServerAccounts(BaseSettings):
    """Secrets only ``migrate --server-users`` needs; read when that option is given, never logged.
    Each password may instead be a file (``CLICKHOUSE_ADMIN_PASSWORD_FILE``: a mounted secret)."""

    model_config = SettingsConfigDict(env_prefix="CLICKHOUSE_", extra="ignore", hide_input_in_errors=True)

    admin_user: str = "admin"
    admin_password: SecretStr
    reader_password: SecretStr
    admin_password_file: Path | None = None
    reader_password_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _passwords_from_files(cls, values: dict[str, Any]) -> dict[str, Any]:
        for name in ("admin_password", "reader_password"):
            path = values.get(f"{name}_file")
            if path and not values.get(name):
                values[name] = read_secret_file(Path(path))
        return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("migrate", help="apply the ClickHouse migrations to the configured database")
    parser.add_argument(
        "--server-users",
        action="store_true",
        help="connect as CLICKHOUSE_ADMIN_USER and also create/update the writer and grafana_reader users",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        applied = apply_migrations(settings, server_users=args.server_users)
    except ValidationError as error:
        missing = ", ".join("CLICKHOUSE_" + str(detail["loc"][0]).upper() for detail in error.errors())
        print(f"framestream migrate --server-users: set {missing} in the environment", file=sys.stderr)
        return 2
    except (MigrationError, ChdbBusyError, ValueError) as error:
        print(f"framestream migrate: {error}", file=sys.stderr)
        return 2
    print(f"{settings.clickhouse.database}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    return 0


def apply_migrations(settings: Settings, server_users: bool = False) -> list[str]:
    """Migrate (and optionally create the users); returns the versions applied now."""
    clickhouse = settings.clickhouse
    accounts = ServerAccounts() if server_users else None
    if accounts is not None:
        admin = {"username": accounts.admin_user, "password": accounts.admin_password}
        clickhouse = clickhouse.model_copy(update=admin)
    client = connect(clickhouse, settings.data_dir)
    try:
        applied = migrate(client, clickhouse.database, clickhouse.ttl_days)
        if accounts is not None:
            apply_server_users(client, clickhouse.database, settings.clickhouse.password, accounts.reader_password)
    finally:
        client.close()
    log.info("clickhouse migrated", extra={"database": clickhouse.database, "applied": applied})
    return applied
