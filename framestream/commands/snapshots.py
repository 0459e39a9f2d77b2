"""``framestream snapshots prune [--older-than 7d]``: delete alert snapshots past their retention.

The store is the alert stage's (``FRAMESTREAM_SNAPSHOTS_STORE_URL``: by default ``<data_dir>/snapshots``;
``s3://bucket/prefix`` lists and deletes objects by their LastModified). Run it daily (cron, a
Kubernetes CronJob). On S3 a lifecycle rule on the prefix does the same job without it
(``infra/s3/snapshots-lifecycle.json``). ClickHouse keeps the alert rows, and so the URLs, for its
own TTL (``FRAMESTREAM_CLICKHOUSE_TTL_DAYS``); a URL older than the snapshot retention points at
nothing, which the report and the dashboard show as a missing image.
"""

from __future__ import annotations

import argparse
import threading
from datetime import timedelta

from framestream.commands.report import parse_duration
from framestream.settings import Settings
from streams.retry import RetryPolicy
from streams.snapshots import SnapshotSettings, open_snapshot_store, prune

PRUNE_RETRY = RetryPolicy(initial_s=0.5, max_s=10.0, jitter=0.1)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("snapshots", help="alert snapshots: prune those past their retention")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    pruning = actions.add_parser("prune", help="delete snapshots stored longer ago than --older-than")
    pruning.add_argument(
        "--older-than",
        type=parse_duration,
        default=None,
        help="e.g. 36h or 7d (default: FRAMESTREAM_SNAPSHOTS_RETENTION_DAYS, 7d)",
    )
    pruning.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    snapshot_settings = SnapshotSettings()
    older_than = args.older_than or timedelta(days=snapshot_settings.retention_days)
    store = open_snapshot_store(snapshot_settings, settings.data_dir, PRUNE_RETRY, threading.Event())
    try:
        removed = prune(store, older_than)
    finally:
        store.close()
    print(f"snapshots: removed {removed} older than {older_than}")
    return 0
