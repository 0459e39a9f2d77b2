"""Snapshot retention: ``prune`` on an S3-protocol server (moto's) and ``framestream snapshots prune`` on a
folder, as an operator's cron job runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from framestream.settings import REPO_ROOT
from streams.retry import RetryPolicy
from streams.snapshots import SnapshotSettings, open_snapshot_store, prune
from tests.integration.test_example_store import JPEG, S3Server, bucket, s3  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
FAST = RetryPolicy(initial_s=0.05, max_s=0.2)


def test_prune_on_s3_deletes_only_old_snapshots_under_the_prefix(s3: S3Server, tmp_path: Path) -> None:  # noqa: F811
    settings = SnapshotSettings(store_url=f"s3://{bucket(s3)}/snapshots", s3_endpoint_url=s3.endpoint)
    client = s3.client()
    store = open_snapshot_store(settings, tmp_path, FAST, threading.Event(), client=client)
    for key in ("cam-1/a:cam-1:1.jpg", "cam-2/a:cam-2:5.jpg"):
        store.put(key, JPEG, "image/jpeg")
    client.put_object(Bucket=bucket(s3), Key="other/keep.jpg", Body=JPEG)
    now = datetime.now(UTC)
    assert prune(store, timedelta(days=7), now=now + timedelta(days=1)) == 0
    assert prune(store, timedelta(days=7), now=now + timedelta(days=8)) == 2
    left = [item["Key"] for item in client.list_objects_v2(Bucket=bucket(s3)).get("Contents", [])]
    assert left == ["other/keep.jpg"]
    store.close()


def test_prune_command_on_the_default_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "snapshots" / "cam-1"
    folder.mkdir(parents=True)
    old, new = folder / "r:cam-1:1.jpg", folder / "r:cam-1:2.jpg"
    for path in (old, new):
        path.write_bytes(JPEG)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    env = {key: value for key, value in os.environ.items() if not key.startswith("FRAMESTREAM_")}
    env["FRAMESTREAM_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "framestream.cli", "snapshots", "prune", "--older-than", "7d"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "removed 1 older than 7 days" in done.stdout
    assert not old.exists() and new.exists()
