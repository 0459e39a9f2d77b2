"""``framestream setup``: create every topic (explicit partitions and retention) and apply
the ClickHouse migrations. Idempotent; run before the workers start."""

from __future__ import annotations

import argparse
import logging

from framestream.services.clickhouse import connect, migrate
from framestream.services.stack import create_deployment_topics
from framestream.settings import Settings

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("setup", help="create the topics and apply the ClickHouse migrations")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    create_deployment_topics(settings)
    log.info("topics ready", extra={"prefix": settings.kafka.topic_prefix})
    client = connect(settings.clickhouse, settings.data_dir)
    try:
        applied = migrate(client, settings.clickhouse.database, settings.clickhouse.ttl_days)
    finally:
        client.close()
    log.info("clickhouse migrated", extra={"applied": applied, "database": settings.clickhouse.database})
    return 0
