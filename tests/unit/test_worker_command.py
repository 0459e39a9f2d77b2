"""``framestream worker`` refuses bad configuration before it touches any service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framestream.cli import main

# Nothing listens here: reaching the broker would fail differently (exit 4, not 2).
UNUSED_BROKER = "127.0.0.1:9"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ("FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS", "FRAMESTREAM_TRITON_URL", "FRAMESTREAM_RULES_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FRAMESTREAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS", UNUSED_BROKER)
    monkeypatch.setenv("FRAMESTREAM_TRITON_URL", "127.0.0.1:9")
    return monkeypatch


def error_lines(stderr: str) -> list[str]:
    return [json.loads(line)["error"] for line in stderr.splitlines() if '"level": "error"' in line]


def test_a_bad_rules_file_names_file_field_and_problem(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: person-seen\n    description: Person\n    classes: [persn]\n")
    env.setenv("FRAMESTREAM_RULES_FILE", str(rules))
    assert main(["worker", "--stages", "alert"]) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert f"{rules}: rules[0].classes" in error and "did you mean 'person'" in error


def test_the_rules_file_is_not_read_by_workers_without_the_alert_stage(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("FRAMESTREAM_RULES_FILE", str(tmp_path / "missing.yaml"))
    env.setenv("FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS", "")
    assert main(["worker", "--stages", "persist"]) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS is empty" in error and "missing.yaml" not in error


@pytest.mark.parametrize(
    ("argv", "variable", "value", "expected"),
    [
        (["worker", "--stages", "detect,monitr"], None, None, "unknown stage(s) ['monitr']"),
        (["worker", "--stages", "detect"], "FRAMESTREAM_TRITON_URL", "", "FRAMESTREAM_TRITON_URL is empty"),
        (["worker", "--stages", "persist"], "FRAMESTREAM_WORKER_PERSIST_MAX_ROWS", "0", "persist_max_rows"),
    ],
)
def test_bad_arguments_and_settings_stop_the_worker(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    variable: str | None,
    value: str | None,
    expected: str,
) -> None:
    if variable is not None:
        env.setenv(variable, value)
    assert main(argv) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert expected in error
