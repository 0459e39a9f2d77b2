"""``framestream ingest`` refuses to start without a broker or with a bad cameras file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from framestream.commands import ingest as ingest_command
from framestream.settings import KafkaSettings, Settings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ingest_command.register(parser.add_subparsers())
    return parser.parse_args(["ingest", *argv])


def settings(bootstrap: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap))


def test_without_a_broker_it_says_how_to_get_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest_command.run(parse([]), settings("")) == 2
    error = capsys.readouterr().err
    assert "framestream services" in error and "FRAMESTREAM_KAFKA_BOOTSTRAP_SERVERS" in error


def test_a_bad_cameras_file_is_reported_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text("cameras:\n  - {id: a, source: {kind: synthetic}, fps: -1}\n")
    # An unroutable broker address: the command must fail on the file without trying it.
    assert ingest_command.run(parse(["--cameras", str(cameras)]), settings("192.0.2.1:9")) == 2
    error = capsys.readouterr().err
    assert f"{cameras}: cameras[0].fps: Input should be greater than 0" in error


@pytest.mark.parametrize("argv", [["--max-frames", "0"], ["--duration", "-1"], ["--seq-start", "-5"]])
def test_bad_arguments_are_rejected(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
