"""``framestream review ALERT_ID --verdict tp|fp``: a person's verdict on an alert, published to
``vision.alert-reviews.v1`` (persisted to ClickHouse ``alert_reviews``; the Alerts dashboard turns
reviews into precision per rule and camera).

Usage:
    framestream review person-seen:gate.2:4411 --verdict fp --class dog --note "the neighbour's dog"
    framestream review person-seen:gate.2:4411 --verdict tp --reviewer ana

The alert is looked up in ClickHouse (``alerts``) for its camera, rule and frame; an unknown id is
an error (exit 1). With chDB that needs the data directory free (no persist worker running):
``--no-lookup`` instead takes them from the alert id's deterministic form
``<rule_id>:<camera_id>:<frame_seq>``. The command returns once the broker confirmed delivery
(exit 0); ClickHouse or the broker unavailable: exit 2. Reviewing again with the same reviewer
keeps the same ``review_id``; the latest verdict counts.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import dataclass

from framestream.settings import Settings
from schemas.base import utc_now
from schemas.reviews import AlertReview, review_id_for

EXIT_BAD_INPUT = 1
EXIT_UNAVAILABLE = 2
VERDICTS = {"tp": "true_positive", "fp": "false_positive"}


class ReviewError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class AlertRef:
    alert_id: str
    camera_id: str
    rule_id: str
    event_id: str


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("review", help="publish a verdict (true/false positive) on an alert")
    parser.add_argument("alert_id", metavar="ALERT_ID", help="the alert's id, e.g. person-seen:gate.2:4411")
    parser.add_argument("--verdict", required=True, choices=sorted(VERDICTS), help="tp: right, fp: a false alarm")
    parser.add_argument("--class", dest="corrected_class", metavar="NAME", help="what the object really was")
    parser.add_argument("--reviewer", default=None, help="who reviews (default: the login name)")
    parser.add_argument("--note", default=None, help="free text kept with the review")
    parser.add_argument(
        "--no-lookup",
        action="store_true",
        help="do not ask ClickHouse; derive camera, rule and frame from the id '<rule_id>:<camera_id>:<frame_seq>'",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker's confirmation")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        alert = parse_alert_id(args.alert_id) if args.no_lookup else lookup_alert(settings, args.alert_id)
        review = build_review(alert, args)
        partition, offset = publish(settings, review, args.timeout)
    except ReviewError as error:
        print(f"framestream review: {error}", file=sys.stderr)
        return error.exit_code
    print(f"{review.review_id}: {review.verdict}, delivered to partition {partition} at offset {offset}")
    return 0


def build_review(alert: AlertRef, args: argparse.Namespace) -> AlertReview:
    from pydantic import ValidationError

    reviewer = args.reviewer or getpass.getuser()
    try:
        return AlertReview(
            review_id=review_id_for(alert.alert_id, reviewer),
            alert_id=alert.alert_id,
            camera_id=alert.camera_id,
            rule_id=alert.rule_id,
            event_id=alert.event_id,
            verdict=VERDICTS[args.verdict],
            corrected_class=args.corrected_class,
            reviewer=reviewer,
            reviewed_at=utc_now(),
            note=args.note,
        )
    except ValidationError as error:
        raise ReviewError(f"invalid review: {error}", EXIT_BAD_INPUT) from error


def parse_alert_id(alert_id: str) -> AlertRef:
    """Camera, rule and frame from a rule alert's id ``<rule_id>:<camera_id>:<frame_seq>`` (no ``:`` inside)."""
    parts = alert_id.split(":")
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        raise ReviewError(
            f"{alert_id!r} is not of the form <rule_id>:<camera_id>:<frame_seq>; look it up instead (drop --no-lookup)",
            EXIT_BAD_INPUT,
        )
    rule_id, camera_id, frame_seq = parts
    return AlertRef(alert_id, camera_id, rule_id, f"{camera_id}:{frame_seq}")


def lookup_alert(settings: Settings, alert_id: str) -> AlertRef:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from streams.sinks.clickhouse_db import ChdbBusyError, connect

    try:
        client = connect(settings.clickhouse, settings.data_dir)
        try:
            rows = client.query(
                "SELECT camera_id, rule_id, event_id FROM alerts WHERE alert_id = {alert_id:String} LIMIT 1",
                parameters={"alert_id": alert_id},
            ).result_rows
        finally:
            client.close()
    except ChdbBusyError as error:
        raise ReviewError(f"{error} (or pass --no-lookup)", EXIT_UNAVAILABLE) from error
    except (OSError, OperationalError) as error:
        raise ReviewError(f"ClickHouse unavailable: {error}", EXIT_UNAVAILABLE) from error
    except DatabaseError as error:
        raise ReviewError(
            f"cannot read alerts (run `framestream migrate` first?): {error}", EXIT_UNAVAILABLE
        ) from error
    if not rows:
        raise ReviewError(
            f"no alert {alert_id!r} in ClickHouse {settings.clickhouse.database}.alerts: check the id "
            "(alert ids are '<rule_id>:<camera_id>:<frame_seq>')",
            EXIT_BAD_INPUT,
        )
    camera_id, rule_id, event_id = rows[0]
    return AlertRef(alert_id, str(camera_id), str(rule_id), str(event_id))


def publish(settings: Settings, review: AlertReview, timeout_s: float) -> tuple[int, int]:
    """Produce the review (key: camera id) and wait for the broker's acknowledgement; (partition, offset)."""
    from confluent_kafka import KafkaException, Producer

    from streams.kafka_config import producer_config
    from streams.topics import TopicError, TopicNames, create_deployment_topics

    topic = TopicNames(settings.kafka.topic_prefix).alert_reviews
    reports: list[tuple[object, object]] = []
    try:
        create_deployment_topics(settings.kafka)  # idempotent; never let a broker auto-create it
        producer = Producer(producer_config(settings.kafka, client_id="framestream-review"))
        producer.produce(
            topic,
            key=review.camera_id.encode(),
            value=review.model_dump_json().encode(),
            on_delivery=lambda error, message: reports.append((error, message)),
        )
        remaining = producer.flush(timeout_s)
    except (TopicError, KafkaException, BufferError) as error:
        raise ReviewError(f"broker unavailable: {error}", EXIT_UNAVAILABLE) from error
    if remaining or not reports:
        raise ReviewError(f"no delivery confirmation from the broker within {timeout_s:.0f}s", EXIT_UNAVAILABLE)
    error, message = reports[0]
    if error is not None:
        raise ReviewError(f"the broker refused the review: {error}", EXIT_UNAVAILABLE)
    return message.partition(), message.offset()  # type: ignore[attr-defined]
