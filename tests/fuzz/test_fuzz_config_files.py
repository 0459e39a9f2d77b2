"""Fuzzing the cameras and rules YAML loaders: any file content gives the configuration or a
``ConfigFileError`` naming the file, field and problem (the program stops at once, saying so),
never another exception and never a hang. Inputs: random text, random YAML documents, and the
bundled samples with a few bytes or one value changed."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from streams.config_files import ConfigFileError, load_rules
from streams.ingest.cameras import load_cameras
from tests.fuzz.strategies import FUZZ, JSON_VALUES, mutated, tally

pytestmark = pytest.mark.fuzz

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# One folder for the whole session: hypothesis reruns the test body, not the fixtures. Camera
# files name paths relative to themselves, so the media folder is linked in beside them.
WORKDIR = Path(tempfile.mkdtemp(prefix="framestream-fuzz-config-"))
(WORKDIR / "media").symlink_to(SAMPLES / "media")
LOADERS: dict[str, tuple[Callable[[Path], object], bytes]] = {
    "cameras": (load_cameras, (SAMPLES / "cameras.yaml").read_bytes()),
    "rules": (load_rules, (SAMPLES / "rules.yaml").read_bytes()),
}


@st.composite
def value_swapped(draw: st.DrawFn, valid: bytes) -> bytes:
    """The sample with one value somewhere in it replaced by any YAML-able value, or removed."""
    document = yaml.safe_load(valid)
    node = document
    while isinstance(node, dict | list) and node:
        keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        if draw(st.booleans()):
            node[key] = draw(JSON_VALUES)
        elif isinstance(node, dict):
            del node[key]
        else:
            node.pop(key)
        break
    return yaml.safe_dump(document).encode()


@pytest.mark.parametrize("kind", list(LOADERS))
@FUZZ
@given(data=st.data())
def test_config_files_load_or_raise_config_file_error(kind: str, data: st.DataObject) -> None:
    tally()
    load, valid = LOADERS[kind]
    content = data.draw(
        st.one_of(
            st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
            st.binary(max_size=300),
            JSON_VALUES.map(lambda value: yaml.safe_dump(value).encode()),
            mutated(st.just(valid)),
            value_swapped(valid),
        )
    )
    path = WORKDIR / f"{kind}.yaml"
    path.write_bytes(content)
    try:
        load(path)
    except ConfigFileError as error:
        assert str(path) in str(error) or path.name in str(error), "the error names the file"
