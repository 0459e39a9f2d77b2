"""streams/faust_patches.py: the version pin, and each patch where it can be checked without a broker.

The race patches 1 and 2 fix is proven against a real broker in tests/integration/test_recovery.py
(workers moved to new worker ids); here: that they are installed where faust looks for them, that
the private parts they override still exist with the shapes they were written against, and what
they change, driven with stand-ins for the consumer, its thread and flow control (each beside
the same stand-ins through faust's own code, showing the behaviour the patch removes).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka
import faust
import mode
import pytest
from aiokafka.consumer.fetcher import Fetcher as AiokafkaFetcher
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from streams import faust_patches
from streams.faust_patches import (
    FAUST_VERSION,
    FaustVersionError,
    PatchedConsumer,
    SeekFirstRecovery,
    SeekFirstTableManager,
    check_faust_version,
    source_partitions,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_installed_faust_is_the_version_the_patches_were_written_for() -> None:
    """Fails on any faust upgrade: re-check every patch in streams/faust_patches.py first."""
    assert faust_patches.installed_faust_version() == FAUST_VERSION
    assert faust.__version__ == FAUST_VERSION


def test_pyproject_pins_the_patched_faust_version() -> None:
    pins = re.findall(r'"faust-streaming==([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert pins == [FAUST_VERSION]


def test_another_faust_version_is_refused_with_what_to_do() -> None:
    check_faust_version(FAUST_VERSION)
    with pytest.raises(FaustVersionError, match=r"0\.15\.3.*0\.16\.0 is installed.*Re-check each patch"):
        check_faust_version("0.16.0")


def test_apply_refuses_another_faust_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_patches, "installed_faust_version", lambda: "0.15.4")
    with pytest.raises(FaustVersionError):
        faust_patches.apply(faust.App("test-refused", broker="kafka://127.0.0.1:1"))
    with pytest.raises(FaustVersionError):
        faust_patches.Worker(faust.App("test-refused-worker", broker="kafka://127.0.0.1:1"), on_stop_signal=print)


def test_apply_installs_the_recovery_patch_and_the_tansu_fetch_wait_only_when_asked() -> None:
    app = faust.App("test-apply", broker="kafka://127.0.0.1:1")
    faust_patches.apply(app)
    assert isinstance(app.tables, SeekFirstTableManager)
    assert type(app.tables.recovery) is SeekFirstRecovery
    assert issubclass(app.transport.Consumer, PatchedConsumer)
    assert app.transport.Consumer.fetch_max_wait_ms is None  # the kafka profile keeps faust's 1500 ms

    tansu = faust.App("test-apply-tansu", broker="kafka://127.0.0.1:1")
    faust_patches.apply(tansu, fetch_max_wait_ms=100)
    assert issubclass(tansu.transport.Consumer, PatchedConsumer)
    assert tansu.transport.Consumer.fetch_max_wait_ms == 100


def test_apply_after_a_table_exists_is_refused() -> None:
    app = faust.App("test-late", broker="kafka://127.0.0.1:1")
    app.tables  # noqa: B018 - creates faust's own TableManager, and with it its Recovery
    with pytest.raises(RuntimeError, match="before the app's first table"):
        faust_patches.apply(app)


# The private parts each patch overrides or relies on, as in faust 0.15.3, mode 0.7 and aiokafka 0.14.
def test_patched_private_parts_still_have_the_shapes_the_patches_expect() -> None:
    for name in ("on_recovery_completed", "_resume_streams", "_wait", "_set_recovery_ended", "_is_changelog_tp"):
        assert callable(getattr(Recovery, name)), name
    assert list(inspect.signature(Recovery.on_recovery_completed).parameters) == ["self", "generation_id"]
    assert list(inspect.signature(Recovery._resume_streams).parameters) == ["self", "generation_id"]
    for name in ("perform_seek", "resume_partitions", "resume_flow", "_drain_messages", "_wait_next_records"):
        assert callable(getattr(FaustConsumer, name)), name
    assert list(inspect.signature(aiokafka_driver.Consumer._getmany).parameters) == [
        "self",
        "active_partitions",
        "timeout",
    ]
    assert "_recovery" in faust.tables.TableManager.__annotations__
    assert isinstance(inspect.getattr_static(faust.tables.TableManager, "recovery"), property)
    thread = aiokafka_driver.AIOKafkaConsumerThread
    assert list(inspect.signature(thread._create_worker_consumer).parameters) == ["self", "transport"]
    assert "fetch_max_wait_ms=1500" in inspect.getsource(thread)  # faust's literal
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert list(inspect.signature(mode.Worker._schedule_shutdown).parameters) == ["self", "signal"]
    assert "_signal_stop_time" in inspect.getsource(mode.Worker._schedule_shutdown)
    assert "spinner" in faust.Worker.__annotations__


def test_the_unpatched_faust_still_resumes_before_it_seeks() -> None:
    """If this fails, faust changed the order itself (#596 fixed?): drop patch 1 rather than keep it."""
    source = inspect.getsource(Recovery.on_recovery_completed)
    assert source.index("consumer.resume_partitions(") < source.index("consumer.perform_seek()")


def test_source_partitions_leave_out_the_changelogs() -> None:
    tps = {TP("detections", 0), TP("detections", 1), TP("cooldowns-changelog", 0)}
    assert source_partitions(tps, lambda tp: tp.topic.endswith("-changelog")) == {
        TP("detections", 0),
        TP("detections", 1),
    }


def test_the_unpatched_faust_still_fetches_with_its_live_set_which_aiokafka_reads_empty_as_all() -> None:
    """If this fails, faust or aiokafka changed what patch 2 guards against: re-check it."""
    assert "records = await self._getmany(\n                    active_partitions=active_partitions," in (
        inspect.getsource(FaustConsumer._wait_next_records)
    )
    assert "if partitions and tp not in partitions:" in inspect.getsource(AiokafkaFetcher.fetched_records)


# --- patch 2: a fetch sees the active partitions as they were when it began ---


class FetchingThread:
    """The consumer thread's ``getmany``: while it waits, the recovery pauses every partition."""

    def __init__(self, live: set[TP]) -> None:
        self.live = live
        self.asked: list[set[TP] | None] = []

    async def getmany(self, active_partitions: set[TP] | None, timeout: float) -> dict:
        self.live.clear()  # "Done reading from changelog topics": the changelogs are paused
        await asyncio.sleep(0)
        self.asked.append(None if active_partitions is None else set(active_partitions))
        return {}


def consumer_with(consumer_class: type, thread: FetchingThread) -> Any:
    consumer = consumer_class.__new__(consumer_class)
    consumer._thread = thread
    return consumer


def test_a_fetch_keeps_the_partitions_active_when_it_began() -> None:
    live = {TP("cooldowns-changelog", 0), TP("cooldowns-changelog", 1)}
    thread = FetchingThread(live)
    asyncio.run(consumer_with(PatchedConsumer, thread)._getmany(live, 1.0))
    assert thread.asked == [{TP("cooldowns-changelog", 0), TP("cooldowns-changelog", 1)}]


def test_unpatched_a_fetch_sees_the_set_emptied_under_it_which_aiokafka_reads_as_all() -> None:
    live = {TP("cooldowns-changelog", 0)}
    thread = FetchingThread(live)
    asyncio.run(consumer_with(aiokafka_driver.Consumer, thread)._getmany(live, 1.0))
    assert thread.asked == [set()]


def test_no_fetch_with_no_active_partition_and_client_only_apps_fetch_everything() -> None:
    thread = FetchingThread(set())
    consumer = consumer_with(PatchedConsumer, thread)
    assert asyncio.run(consumer._getmany(set(), 1.0)) == {}
    asyncio.run(consumer._getmany(None, 1.0))
    assert thread.asked == [None]


# --- patch 1's order of steps, with stand-ins recording what faust's consumer would be asked ---


class Recorder:
    """The consumer, flow control and fetcher a Recovery talks to; ``steps`` in call order."""

    def __init__(self, assignment: set[TP]) -> None:
        self.steps: list[str] = []
        self._assignment = assignment
        self.paused = set(assignment)

    # consumer
    def assignment(self) -> set[TP]:
        return self._assignment

    async def perform_seek(self) -> None:
        self.steps.append(f"seek (source partitions paused: {self.sources_paused()})")
        await asyncio.sleep(0)  # a real seek awaits the broker: other tasks run meanwhile

    def resume_partitions(self, tps: set[TP]) -> None:
        self.paused -= set(tps)
        self.steps.append(f"resume partitions {sorted(tp.partition for tp in tps)}")

    def resume_flow(self) -> None:
        self.steps.append("resume consumer flow")

    def sources_paused(self) -> bool:
        return all(tp in self.paused for tp in self._assignment if tp.topic == "detections")

    # app.flow_control
    def resume(self) -> None:
        self.steps.append("flow control resume (clears the queues)")

    # app._fetcher
    async def maybe_start(self) -> None:
        self.steps.append("fetcher started")


async def _noop(*_: Any, **__: Any) -> None:
    return None


def recovery_with(recorder: Recorder) -> SeekFirstRecovery:
    """A SeekFirstRecovery wired to stand-ins, without starting a faust app."""
    recovery = SeekFirstRecovery.__new__(SeekFirstRecovery)
    app = SimpleNamespace(
        consumer=recorder,
        flow_control=recorder,
        _fetcher=recorder,
        consumer_generation_id=7,
        on_rebalance_complete=SimpleNamespace(send=_noop),
        on_rebalance_end=lambda: None,
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        conf=SimpleNamespace(broker_request_timeout=5.0),
    )
    tables = SimpleNamespace(values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None)
    log = SimpleNamespace(info=lambda *a: None, dev=lambda *a: None, warning=lambda *a: None)
    vars(recovery).update(
        app=app,
        tables=tables,
        completed=asyncio.Event(),
        _set_recovery_ended=lambda: None,
        _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
        log=log,
    )

    async def wait(coro: Any, timeout: float | None = None) -> None:
        await coro

    recovery._wait = wait  # type: ignore[method-assign]
    return recovery


ASSIGNMENT = {TP("detections", 0), TP("detections", 1), TP("cooldowns-changelog", 0), TP("cooldowns-changelog", 1)}
PATCHED_ORDER = [
    "seek (source partitions paused: True)",
    "flow control resume (clears the queues)",
    "resume consumer flow",
    "resume partitions [0, 1]",
    "fetcher started",
]


def test_recovery_completed_seeks_while_the_sources_are_paused_and_resumes_them_last() -> None:
    recorder = Recorder(ASSIGNMENT)
    asyncio.run(recovery_with(recorder).on_recovery_completed(generation_id=7))
    assert recorder.steps == PATCHED_ORDER
    assert recorder.paused == {TP("cooldowns-changelog", 0), TP("cooldowns-changelog", 1)}  # changelogs stay paused


def test_resume_streams_without_tables_seeks_first_too() -> None:
    recorder = Recorder(ASSIGNMENT)
    asyncio.run(recovery_with(recorder)._resume_streams(generation_id=7))
    assert recorder.steps == PATCHED_ORDER


def test_resume_streams_with_an_empty_assignment_neither_seeks_nor_resumes_partitions() -> None:
    recorder = Recorder(set())
    asyncio.run(recovery_with(recorder)._resume_streams(generation_id=7))
    assert recorder.steps == ["flow control resume (clears the queues)", "resume consumer flow", "fetcher started"]


def test_a_newer_rebalance_leaves_everything_paused() -> None:
    recorder = Recorder(ASSIGNMENT)
    recovery = recovery_with(recorder)
    asyncio.run(recovery.on_recovery_completed(generation_id=6))  # the app is at generation 7 already
    asyncio.run(recovery._resume_streams(generation_id=6))
    assert recorder.steps == []


def test_unpatched_faust_resumes_the_sources_before_the_seek() -> None:
    """The same stand-ins through faust's own method: the order #596 describes (the test above is not vacuous)."""
    recorder = Recorder(ASSIGNMENT)
    recovery = recovery_with(recorder)
    asyncio.run(Recovery.on_recovery_completed(recovery, generation_id=7))
    assert recorder.steps[:2] == ["resume partitions [0, 1]", "seek (source partitions paused: False)"]


# --- patch 3: the worker's shutdown deadline ---


def test_worker_arms_the_deadline_on_the_first_stop_signal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    calls: list[str] = []
    monkeypatch.setattr(mode.Worker, "_schedule_shutdown", lambda self, sig: setattr(self, "_signal_stop_time", 1.0))
    worker = faust_patches.Worker.__new__(faust_patches.Worker)
    worker._on_stop_signal = lambda: calls.append("deadline armed")
    worker._signal_stop_time = None
    worker._schedule_shutdown(signal.SIGTERM)
    worker._schedule_shutdown(signal.SIGTERM)
    assert calls == ["deadline armed"]


def test_worker_has_no_spinner() -> None:
    app = faust.App("test-worker", broker="kafka://127.0.0.1:1")
    worker = faust_patches.Worker(
        app, on_stop_signal=lambda: None, quiet=True, redirect_stdouts=False, override_logging=False
    )
    assert worker.spinner is None
