"""The reliability harness, short: ``framestream chaos`` for a few minutes with a fixed seed on the
embedded stack (three Kafka nodes, tritonserver, chDB), every fault kind at least once, and no
invariant violated. Then the harness's own check: a deliberately broken build, one that lets
faust commit offsets before the outputs are delivered (``FRAMESTREAM_FAULT_COMMIT_BEFORE_DELIVERY``,
read in streams/delivery.py), must be caught: the same kind of run reports violations.

The 30-minute soak (README, "Reliability: chaos soak and fuzzing") is the same command with
``--duration 30m --seed 1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from framestream.child_process import ChildProcess
from framestream.services.kafka import kafka_unavailable_reason

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def chaos(tmp_path: Path, *args: str, timeout_s: float, **env: str) -> dict:
    if (reason := kafka_unavailable_reason()) is not None:
        pytest.skip(reason)
    report = tmp_path / "chaos.json"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FRAMESTREAM_")}
    environment |= {"FRAMESTREAM_DATA_DIR": str(tmp_path / "data"), **env}
    command = ChildProcess.framestream(
        ["chaos", *args, "--json", str(report), "--out", str(tmp_path / "run")],
        log_path=tmp_path / "chaos.log",
        env=environment,
    )
    command.start().wait(timeout_s)
    print(command.log_tail(60))
    assert report.exists(), f"no report; see {command.log_path}:\n{command.log_tail(40)}"
    return json.loads(report.read_text())


def test_short_soak_with_every_fault_kind_has_no_violations(tmp_path: Path) -> None:
    report = chaos(tmp_path, "--duration", "150s", "--seed", "7", "--mean-interval", "10", timeout_s=1200)
    injected = {row["kind"]: row["injected"] for row in report["faults_by_kind"]}
    assert all(count >= 1 for count in injected.values()), injected
    assert report["violations"] == []
    assert report["records_checked"]["frames"] > 0 and report["records_checked"]["malformed"] > 0


@pytest.mark.xfail(
    reason="not caught yet: on 2026-12-01 a 120 s kill-only run of the broken build (17 kills, 3 of persist, "
    "5 of detect) lost nothing and reported 0 violations; why the early acks were never committed "
    "past undelivered outputs is not yet understood (README, Reliability)",
    strict=False,
)
def test_a_build_that_commits_before_delivery_is_caught(tmp_path: Path) -> None:
    """Only kills, often, with persist flushing every 2 s: a killed worker loses what its group
    had committed but not delivered, which the exactly-once check sees."""
    report = chaos(
        tmp_path,
        *("--duration", "120s", "--seed", "11", "--faults", "kill", "--mean-interval", "6", "--fps", "1"),
        timeout_s=1200,
        FRAMESTREAM_FAULT_COMMIT_BEFORE_DELIVERY="1",
        FRAMESTREAM_WORKER_PERSIST_MAX_INTERVAL_S="2",
    )
    checks = {violation["check"] for violation in report["violations"]}
    assert checks & {"exactly-once", "alerts", "alerts-topic", "detections"}, report["violations"]
