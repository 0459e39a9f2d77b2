"""framestream review: arguments to an AlertReview, and the alert id's deterministic form."""

from __future__ import annotations

import argparse

import pytest

from framestream.cli import build_parser
from framestream.commands.review import AlertRef, ReviewError, build_review, parse_alert_id


@pytest.mark.parametrize(
    ("alert_id", "expected"),
    [
        ("person-seen:gate.2:4411", AlertRef("person-seen:gate.2:4411", "gate.2", "person-seen", "gate.2:4411")),
        ("crowd:cam-1:0", AlertRef("crowd:cam-1:0", "cam-1", "crowd", "cam-1:0")),
        ("crowd:cam-1", ReviewError),
        ("crowd:cam-1:x", ReviewError),
        ("a:b:c:1", ReviewError),
        ("::1", ReviewError),
    ],
)
def test_parse_alert_id(alert_id: str, expected: AlertRef | type[Exception]) -> None:
    if isinstance(expected, AlertRef):
        assert parse_alert_id(alert_id) == expected
    else:
        with pytest.raises(expected, match="<rule_id>:<camera_id>:<frame_seq>"):
            parse_alert_id(alert_id)


def arguments(*argv: str) -> argparse.Namespace:
    return build_parser(["review", *argv]).parse_args(["review", *argv])


def test_arguments_become_a_review_of_the_alert() -> None:
    alert = parse_alert_id("person-seen:gate.2:4411")
    args = arguments(alert.alert_id, "--verdict", "fp", "--class", "dog", "--reviewer", "ana", "--note", "a dog")
    review = build_review(alert, args)
    assert review.review_id == "person-seen:gate.2:4411:ana" and review.verdict == "false_positive"
    assert (review.camera_id, review.rule_id, review.event_id) == ("gate.2", "person-seen", "gate.2:4411")
    assert (review.corrected_class, review.note) == ("dog", "a dog")
    assert build_review(alert, arguments(alert.alert_id, "--verdict", "tp")).reviewer  # the login name


@pytest.mark.parametrize("argv", [["a:b:1"], ["a:b:1", "--verdict", "maybe"]])
def test_a_verdict_is_required_and_is_tp_or_fp(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        arguments(*argv)


def test_an_empty_class_is_refused() -> None:
    alert = parse_alert_id("crowd:cam-1:0")
    with pytest.raises(ReviewError, match="corrected_class"):
        build_review(alert, arguments(alert.alert_id, "--verdict", "fp", "--class", ""))
