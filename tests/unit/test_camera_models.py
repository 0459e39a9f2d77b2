"""Per-camera model choice: detector, classifier or both, from the cameras file to frame headers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import FrameMeta
from streams.ingest.cameras import Camera
from tests.factories import make_frame_meta

SOURCE = {"kind": "synthetic"}


@pytest.mark.parametrize(
    ("fields", "detector", "classifier"),
    [
        ({}, True, None),
        ({"classifier": "defects"}, True, "defects"),
        ({"detector": False, "classifier": "defects"}, False, "defects"),
    ],
)
def test_camera_models(fields: dict, detector: bool, classifier: str | None) -> None:
    camera = Camera(id="line-1", source=SOURCE, **fields)
    assert (camera.detector, camera.classifier) == (detector, classifier)


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"detector": False}, "a camera needs a model"), ({"classifier": "Defects!"}, "should match pattern")],
)
def test_bad_camera_models_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Camera(id="line-1", source=SOURCE, **fields)


@pytest.mark.parametrize(("detector", "classifier"), [(True, None), (True, "defects"), (False, "defects")])
def test_model_choice_travels_in_the_headers(detector: bool, classifier: str | None) -> None:
    meta = make_frame_meta().model_copy(update={"detector": detector, "classifier": classifier})
    headers = meta.to_headers()
    assert FrameMeta.from_headers(headers) == meta
    if detector and classifier is None:  # frames of cameras without a classifier carry no new header
        assert FrameMeta.from_headers(headers).to_headers() == make_frame_meta().to_headers()
