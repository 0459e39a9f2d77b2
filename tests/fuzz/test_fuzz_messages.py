"""Fuzzing the message JSON of every schema: whatever bytes a topic carries, parsing them gives
the model or a ``pydantic.ValidationError`` (which the stages turn into a dead letter), never
another exception and never a hang. Inputs: random bytes, random JSON, and valid messages
with a few bytes or one field changed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import Alert, AlertReview, CameraHealth, DeadLetter, FrameDetections, FrameTracks, HardExample, ModelAlert
from tests import factories
from tests.fuzz.strategies import FUZZ, JSON_VALUES, mutated, tally

pytestmark = pytest.mark.fuzz

VALID: dict[type[BaseModel], bytes] = {
    FrameDetections: factories.make_frame_detections(
        detections=[factories.make_detection(), factories.make_detection("dog", 0.7)]
    )
    .model_dump_json()
    .encode(),
    Alert: factories.make_alert().model_dump_json().encode(),
    DeadLetter: factories.make_dead_letter().model_dump_json().encode(),
    AlertReview: factories.make_alert_review().model_dump_json().encode(),
    ModelAlert: factories.make_model_alert().model_dump_json().encode(),
    CameraHealth: factories.make_camera_health().model_dump_json().encode(),
}
# Messages without a factory: the JSON Schema's required fields are enough to mutate from.
OTHERS = (FrameTracks, HardExample)


def parse_or_reject(model: type[BaseModel], data: bytes) -> None:
    try:
        model.model_validate_json(data)
    except ValidationError:
        pass  # rejected with a clear error: a dead letter in the pipeline


@st.composite
def field_swapped(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid message with one (possibly nested) field replaced by any JSON value, or removed."""
    document = json.loads(valid)
    node = document
    while isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
            node = node[key] if isinstance(node[key], dict) else node[key][0]
            continue
        if draw(st.booleans()):
            node[key] = draw(JSON_VALUES)
        else:
            del node[key]
        break
    return json.dumps(document).encode()


@pytest.mark.parametrize("model", list(VALID), ids=lambda model: model.__name__)
@FUZZ
@given(data=st.data())
def test_message_json_is_parsed_or_rejected(model: type[BaseModel], data: st.DataObject) -> None:
    tally()
    valid = VALID[model]
    raw = data.draw(
        st.one_of(
            st.binary(max_size=512),
            JSON_VALUES.map(lambda value: json.dumps(value).encode()),
            mutated(st.just(valid)),
            field_swapped(valid),
        )
    )
    parse_or_reject(model, raw)


@pytest.mark.parametrize("model", OTHERS, ids=lambda model: model.__name__)
@FUZZ
@given(raw=st.one_of(st.binary(max_size=512), JSON_VALUES.map(lambda value: json.dumps(value).encode())))
def test_messages_without_a_factory_are_parsed_or_rejected(model: type[BaseModel], raw: bytes) -> None:
    tally()
    parse_or_reject(model, raw)
