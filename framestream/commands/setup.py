"""``framestream setup``: create every topic (explicit partitions and retention) and apply
the ClickHouse migrations. Idempotent; run before the workers start.

``--server-users`` (docker-compose) migrates as the ClickHouse administrator and creates the
writer and read-only Grafana users; see ``framestream migrate``.
"""

from __future__ import annotations

import argparse
import logging

from framestream.commands.migrate import apply_migrations
from framestream.settings import Settings
from streams.topics import create_deployment_topics

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("setup", help="create the topics and apply the ClickHouse migrations")
    parser.add_argument(
        "--server-users",
        action="store_true",
        help="migrate as CLICKHOUSE_ADMIN_USER and create the writer and grafana_reader users",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    create_deployment_topics(settings.kafka)
    log.info("topics ready", extra={"prefix": settings.kafka.topic_prefix})
    applied = apply_migrations(settings, server_users=args.server_users)
    log.info("clickhouse ready", extra={"applied": applied, "database": settings.clickhouse.database})
    return 0
