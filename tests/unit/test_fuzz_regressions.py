"""Inputs the fuzzers (tests/fuzz) found crashing a boundary, kept as plain regression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config_files import ConfigFileError, load_rules
from streams.ingest.cameras import load_cameras


@pytest.mark.parametrize("load", [load_cameras, load_rules], ids=["cameras", "rules"])
@pytest.mark.parametrize("content", [b"\x80", b"rules:\n  - id: caf\xe9\n"], ids=["lone-continuation", "latin-1"])
def test_a_config_file_that_is_not_utf8_is_a_config_file_error(load, content: bytes, tmp_path: Path) -> None:  # noqa: ANN001
    """Was UnicodeDecodeError (test_fuzz_config_files, draw b'\\x80'): now the file and the byte are named."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigFileError, match=r"config\.yaml.*not UTF-8 text"):
        load(path)
