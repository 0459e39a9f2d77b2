"""ClickHouseSink against a real ClickHouse engine: batching, replay safety, retries, refusals."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from schemas import Alert, DeadLetter, FrameDetections
from streams.sinks.clickhouse import ClickHouseSink, PermanentInsertError, RetryPolicy, SinkCancelled, SinkFailure
from streams.sinks.rows import TABLES, RowConversionError
from tests.factories import BASE_TIME, make_alert, make_dead_letter, make_detection, make_frame_detections
from tests.fixtures.clickhouse import ClickHouseTarget

pytestmark = pytest.mark.integration
FAST_RETRY = RetryPolicy(initial_s=0.01, max_s=0.05)
CLASSES = ("person", "car", "dog")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def workload(cameras: int = 3, frames: int = 20) -> list[FrameDetections | Alert | DeadLetter]:
    """Frames over two minutes with 0-3 objects each, alerts on some, dead letters from two stages."""
    messages: list[FrameDetections | Alert | DeadLetter] = []
    for camera in range(cameras):
        camera_id = f"cam-{camera}"
        for seq in range(frames):
            detections = [make_detection(CLASSES[(seq + i) % 3], 0.5 + 0.1 * i) for i in range(seq % 4)]
            captured = BASE_TIME + timedelta(seconds=6 * seq + camera)
            messages.append(make_frame_detections(camera_id, seq, detections, captured_at=captured))
            if seq % 5 == 0:
                messages.append(make_alert("person-detected", camera_id, seq, captured_at=captured))
    messages += [make_dead_letter(source_offset=offset) for offset in range(4)]
    messages += [make_dead_letter("alert", source_topic="vision.detections.v1", source_offset=9)]
    return messages


def snapshot(client: Client) -> dict[str, object]:
    """Everything a dashboard could count: raw and FINAL counts per table, and the merged rollups."""
    state: dict[str, object] = {}
    for table in ("frames", "detections", "alerts", "dead_letters"):
        state[f"{table}.count"] = client.command(f"SELECT count() FROM {table}")
        state[f"{table}.final"] = client.command(f"SELECT count() FROM {table} FINAL")
    state["detections_per_minute"] = client.query(
        "SELECT minute, camera_id, class_name, uniqExactMerge(detections), uniqExactMerge(frames), "
        "max(max_score), min(min_score) FROM detections_per_minute GROUP BY ALL ORDER BY ALL"
    ).result_rows
    state["frames_per_minute"] = client.query(
        "SELECT minute, camera_id, uniqExactMerge(frames), uniqExactIfMerge(empty_frames), max(max_objects) "
        "FROM frames_per_minute GROUP BY ALL ORDER BY ALL"
    ).result_rows
    return state


def add_all(sink: ClickHouseSink, messages: Sequence[FrameDetections | Alert | DeadLetter]) -> None:
    for message in messages:
        sink.add(message)


def metric(name: str, table: str) -> float:
    return REGISTRY.get_sample_value(name, {"table": table}) or 0.0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flaky_factory(target: ClickHouseTarget, database: str, failures: int) -> Callable[[], Client]:
    """Connects to a port nothing listens on ``failures`` times (a real 'connection refused'), then to the engine."""
    calls = {"n": 0}
    port = closed_port()

    def connect() -> Client:
        calls["n"] += 1
        if calls["n"] <= failures:
            return clickhouse_connect.get_client(host="127.0.0.1", port=port, connect_timeout=1)
        return target.connect(database)

    return connect


def test_size_triggers_a_flush_and_each_table_gets_one_insert(clickhouse_client: Client) -> None:
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database, max_rows=5, max_interval_s=60)
    frames = [make_frame_detections("cam-1", seq, [make_detection()]) for seq in range(5)]
    add_all(sink, frames[:4])
    assert not sink.should_flush()
    sink.add(frames[4])
    assert sink.should_flush()
    inserts_before = metric("framestream_sink_inserts_total", "detections")
    result = sink.flush()
    assert result.inserted == {"frames": 5, "detections": 5}
    assert metric("framestream_sink_inserts_total", "detections") - inserts_before == 1
    assert sink.buffered_rows == dict.fromkeys((table.name for table in TABLES), 0)
    assert sink.seconds_until_due() is None
    assert clickhouse_client.command("SELECT count() FROM detections") == 5


def test_age_of_the_oldest_row_triggers_a_flush() -> None:
    clock = FakeClock()
    sink = ClickHouseSink(lambda: pytest.fail("no flush expected"), "unused", max_interval_s=1.0, clock=clock)
    assert sink.seconds_until_due() is None and not sink.should_flush()
    sink.add(make_alert(frame_seq=1))
    clock.now += 0.6
    sink.add(make_alert(frame_seq=2))  # a later row does not restart the wait
    assert sink.seconds_until_due() == pytest.approx(0.4)
    clock.now += 0.39
    assert not sink.should_flush()
    clock.now += 0.01
    assert sink.should_flush()


def test_a_message_added_twice_before_a_flush_is_one_row(clickhouse_client: Client) -> None:
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database)
    frame = make_frame_detections("cam-1", 3, [make_detection(), make_detection("car")])
    sink.add(frame)
    sink.add(frame)
    assert sink.buffered_rows["detections"] == 2
    assert sink.flush().inserted == {"frames": 1, "detections": 2}


def test_replaying_the_same_messages_leaves_every_count_and_rollup_identical(clickhouse_client: Client) -> None:
    messages = workload()
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database, max_rows=50)
    add_all(sink, messages)
    first = sink.flush()
    assert first.inserted == {"frames": 60, "detections": 90, "alerts": 12, "dead_letters": 5}
    before = snapshot(clickhouse_client)
    assert before["frames.count"] == 60 and before["detections.count"] == 90

    # The replay arrives in other batches and another order, as after a consumer restart.
    replayed = list(reversed(messages))
    for start in range(0, len(replayed), 17):
        add_all(sink, replayed[start : start + 17])
        again = sink.flush()
        assert sum(again.inserted.values()) == 0
    assert snapshot(clickhouse_client) == before


def test_rollups_stay_exact_even_when_duplicates_reach_the_tables(clickhouse_client: Client) -> None:
    """Two writers racing on the same ids (a rebalance) can both insert: the id lookup cannot
    stop that. The rollups must still count each detection once, where a SummingMergeTree of
    count() -- built here for contrast -- counts it twice."""
    database = clickhouse_client.database
    clickhouse_client.command(
        f"CREATE TABLE {database}.naive_per_minute (minute DateTime, camera_id String, detections UInt64) "
        "ENGINE = SummingMergeTree ORDER BY (camera_id, minute)"
    )
    clickhouse_client.command(
        f"CREATE MATERIALIZED VIEW {database}.naive_per_minute_mv TO {database}.naive_per_minute AS "
        f"SELECT toStartOfMinute(captured_at) AS minute, camera_id, count() AS detections "
        f"FROM {database}.detections GROUP BY minute, camera_id"
    )
    messages = workload(cameras=2, frames=10)
    racer_a, racer_b = ClickHouseSink(clickhouse_client, database), ClickHouseSink(clickhouse_client, database)
    add_all(racer_a, messages)
    add_all(racer_b, messages)
    exact = None
    for racer in (racer_a, racer_b):
        racer._stored_ids = lambda client, table, rows: set()  # both looked up before either inserted
        racer._prefetch_stored_ids = lambda buffers: {}  # (the one-query lookup of every table, likewise)
        racer.flush()
        exact = exact or snapshot(clickhouse_client)
    after = snapshot(clickhouse_client)
    assert after["detections.count"] == 2 * after["detections.final"]  # the duplicates are there...
    for key in ("detections_per_minute", "frames_per_minute", "detections.final", "frames.final", "alerts.final"):
        assert after[key] == exact[key], key  # ...and counted once
    naive = clickhouse_client.command("SELECT sum(detections) FROM naive_per_minute")
    assert naive == 2 * after["detections.final"]
    clickhouse_client.command(f"OPTIMIZE TABLE {database}.detections FINAL")
    assert clickhouse_client.command("SELECT count() FROM detections") == after["detections.final"]


def test_connection_refused_is_retried_until_the_database_is_back(
    clickhouse_target: ClickHouseTarget, clickhouse_client: Client
) -> None:
    retries_before = metric("framestream_sink_retries_total", "frames")
    sink = ClickHouseSink(
        flaky_factory(clickhouse_target, clickhouse_client.database, failures=3),
        clickhouse_client.database,
        retry=FAST_RETRY,
    )
    messages = workload(cameras=1, frames=8)
    add_all(sink, messages)
    result = sink.flush()
    sink.close()
    assert metric("framestream_sink_retries_total", "frames") - retries_before == 3
    assert result.inserted["frames"] == 8
    assert clickhouse_client.command("SELECT count() FROM frames") == 8
    assert clickhouse_client.command("SELECT uniqExact(event_id) FROM frames") == 8


def test_an_overloaded_server_is_retried_and_nothing_is_lost_or_doubled(
    clickhouse_target: ClickHouseTarget, clickhouse_client: Client
) -> None:
    """TOO_MANY_PARTS, ClickHouse's 'merges are slower than inserts', is raised by the engine
    itself here: merges stopped and a part limit of 2. The flush must wait it out."""
    database = clickhouse_client.database
    clickhouse_client.command(f"SYSTEM STOP MERGES {database}.frames")
    clickhouse_client.command(f"ALTER TABLE {database}.frames MODIFY SETTING parts_to_throw_insert = 2")
    preload = ClickHouseSink(clickhouse_client, database)
    for seq in range(2):  # two parts in the day's partition: the limit
        preload.add(make_frame_detections("cam-9", seq))
        preload.flush()
    sink = ClickHouseSink(lambda: clickhouse_target.connect(database), database, retry=FAST_RETRY)
    add_all(sink, [make_frame_detections("cam-9", seq) for seq in range(2, 12)])
    retries_before = metric("framestream_sink_retries_total", "frames")
    outcome: dict[str, object] = {}
    flusher = threading.Thread(target=lambda: outcome.update(result=sink.flush()))
    flusher.start()
    deadline = time.monotonic() + 30
    while metric("framestream_sink_retries_total", "frames") - retries_before < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flusher.is_alive(), "the flush should still be waiting for the server"
    clickhouse_client.command(f"SYSTEM START MERGES {database}.frames")
    clickhouse_client.command(f"OPTIMIZE TABLE {database}.frames FINAL")
    flusher.join(timeout=30)
    sink.close()
    assert outcome["result"].inserted == {"frames": 10}  # type: ignore[attr-defined]
    assert clickhouse_client.command("SELECT count() FROM frames") == 12
    assert clickhouse_client.command("SELECT uniqExact(event_id) FROM frames") == 12


def test_cancel_stops_the_retries_and_keeps_the_rows(
    clickhouse_target: ClickHouseTarget, clickhouse_client: Client
) -> None:
    sink = ClickHouseSink(flaky_factory(clickhouse_target, "unused", failures=10**6), "unused", retry=FAST_RETRY)
    add_all(sink, [make_alert(frame_seq=seq) for seq in range(3)])
    raised: list[BaseException] = []

    def flush() -> None:
        try:
            sink.flush()
        except BaseException as error:  # collected for the assertion below
            raised.append(error)

    flusher = threading.Thread(target=flush)
    flusher.start()
    time.sleep(0.3)
    sink.cancel()
    flusher.join(timeout=10)
    assert not flusher.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], SinkCancelled)
    assert sink.buffered_rows["alerts"] == 3


def test_a_refused_message_is_named_and_the_rest_of_the_batch_is_stored(clickhouse_client: Client) -> None:
    clickhouse_client.command(
        f"ALTER TABLE {clickhouse_client.database}.detections ADD CONSTRAINT positive_score CHECK score > 0"
    )
    frames = [make_frame_detections("cam-1", seq, [make_detection(score=0.8)]) for seq in range(7)]
    frames[4] = make_frame_detections("cam-1", 4, [make_detection(score=0.0)])
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database)
    add_all(sink, frames)
    with pytest.raises(PermanentInsertError) as caught:
        sink.flush()
    assert caught.value.table == "detections"
    assert caught.value.message_ids == ("cam-1:4",)
    assert "VIOLATED_CONSTRAINT" in str(caught.value.cause) or "positive_score" in str(caught.value.cause)
    stored = clickhouse_client.query("SELECT event_id FROM detections ORDER BY event_id").result_rows
    assert stored == [(f"cam-1:{seq}",) for seq in (0, 1, 2, 3, 5, 6)]
    assert sink.buffered_rows["detections"] == 0
    assert sink.flush().rows == 0  # the caller dead-letters cam-1:4 and goes on


def test_a_message_that_cannot_be_stored_fails_at_add_and_buffers_nothing() -> None:
    sink = ClickHouseSink(lambda: pytest.fail("no flush expected"), "unused")
    bad = make_frame_detections(frame_seq=5, detections=[make_detection(class_id=70_000)])
    with pytest.raises(RowConversionError, match="cam-1:5: detections.class_id"):
        sink.add(bad)
    assert sink.buffered_rows == dict.fromkeys((table.name for table in TABLES), 0)


def test_close_flushes_what_is_buffered(clickhouse_target: ClickHouseTarget, clickhouse_client: Client) -> None:
    sink = ClickHouseSink(lambda: clickhouse_target.connect(clickhouse_client.database), clickhouse_client.database)
    sink.add(make_dead_letter(source_offset=77))
    assert sink.close().inserted == {"dead_letters": 1}
    assert clickhouse_client.command("SELECT source_offset FROM dead_letters") == 77


def test_a_database_problem_no_row_explains_refuses_nothing_and_keeps_the_rows(
    clickhouse_target: ClickHouseTarget, clickhouse_client: Client
) -> None:
    """A dropped table is an operator's problem, not the messages': no message is blamed (and
    dead-lettered); the rows stay buffered until the table is back."""
    database = clickhouse_client.database
    clickhouse_client.command(f"RENAME TABLE {database}.alerts TO {database}.alerts_away")
    sink = ClickHouseSink(clickhouse_client, database)
    add_all(sink, [make_alert(frame_seq=seq) for seq in range(4)])
    with pytest.raises(SinkFailure, match="alerts: ClickHouse cannot take rows"):
        sink.flush()
    assert sink.buffered_rows["alerts"] == 4
    clickhouse_client.command(f"RENAME TABLE {database}.alerts_away TO {database}.alerts")
    assert sink.flush().inserted == {"alerts": 4}


def test_a_record_rejected_again_after_a_restart_is_stored_once(clickhouse_client: Client) -> None:
    """Re-processing a bad record makes a new dead letter (new time, maybe new wording) with the
    same source: it must not become a second row, whatever day it fails on."""
    sink = ClickHouseSink(clickhouse_client, clickhouse_client.database)
    sink.add(make_dead_letter(source_offset=41, failed_at=BASE_TIME))
    sink.flush()
    sink.add(make_dead_letter(source_offset=41, failed_at=BASE_TIME + timedelta(days=3), reason="decoder: bad marker"))
    assert sink.flush().skipped == {"dead_letters": 1}
    assert clickhouse_client.command("SELECT count() FROM dead_letters") == 1
