"""``framestream setup``: create every topic (explicit partitions and retention) and apply
the ClickHouse migrations. Idempotent; run before the workers start.

``--server-users`` (docker-compose) migrates as the ClickHouse administrator and creates the
writer and read-only Grafana users; see ``framestream migrate``.

``--kafka-users DIR`` (a secured broker; run as the ``admin`` principal, whose settings come
from FRAMESTREAM_KAFKA_SASL_* like any client's): sets each role's SCRAM-SHA-512 password
and makes the roles' ACLs exactly those of ``streams/acls.py``. A role's password is read
from ``DIR/<role>.password`` (a mounted secret) or ``DIR/<role>.env`` (the env files
``framestream services --secure`` writes); a role with neither keeps its current password.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from framestream.commands.migrate import apply_migrations
from framestream.services.security import PASSWORD_ENV, read_env_file
from framestream.settings import Settings
from streams.acls import Role, apply_security
from streams.topics import create_deployment_topics

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    pass


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("setup", help="create the topics and apply the ClickHouse migrations")
    parser.add_argument(
        "--server-users",
        action="store_true",
        help="migrate as CLICKHOUSE_ADMIN_USER and create the writer and grafana_reader users",
    )
    parser.add_argument(
        "--kafka-users",
        type=Path,
        metavar="DIR",
        help="secured Kafka: set the role users' passwords from DIR/<role>.password or DIR/<role>.env, and the ACLs",
    )
    parser.add_argument("--skip-clickhouse", action="store_true", help="only the Kafka part (topics, users, ACLs)")
    parser.set_defaults(handler=run)


def role_passwords(directory: Path) -> dict[str, str]:
    """The role passwords ``directory`` holds (see the module docstring); never logged."""
    if not directory.is_dir():
        raise SetupError(f"--kafka-users {directory}: not a directory")
    passwords = {}
    for role in Role:
        secret_file, env_file = directory / f"{role.value}.password", directory / f"{role.value}.env"
        if secret_file.is_file():
            password = secret_file.read_text().strip("\r\n")
        elif env_file.is_file():
            password = read_env_file(env_file).get(PASSWORD_ENV, "")
        else:
            continue
        if password:
            passwords[role.value] = password
    return passwords


def run(args: argparse.Namespace, settings: Settings) -> int:
    create_deployment_topics(settings.kafka)
    log.info("topics ready", extra={"prefix": settings.kafka.topic_prefix})
    if args.kafka_users is not None:
        if not settings.kafka.secure:
            raise SetupError(
                "--kafka-users needs FRAMESTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL and the admin's credentials"
            )
        passwords = role_passwords(args.kafka_users)
        created, deleted = apply_security(settings.kafka, passwords)
        log.info(
            "kafka users and ACLs ready",
            extra={"users": sorted(passwords), "acls_created": created, "acls_deleted": deleted},
        )
    if args.skip_clickhouse:
        return 0
    applied = apply_migrations(settings, server_users=args.server_users)
    log.info("clickhouse ready", extra={"applied": applied, "database": settings.clickhouse.database})
    return 0
