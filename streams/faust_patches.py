"""Every change this project makes to faust-streaming's private parts, in one place.

Written against faust-streaming 0.15.3 (pinned in pyproject.toml) and checked against its
source. faust offers no public hook for any of these, so each one overrides a private method
or attribute; a new faust version may move or fix them, so ``apply``/``Worker`` refuse to run
on any other version (``FaustVersionError``) and tests/unit/test_faust_patches.py fails as
soon as the installed version differs from ``FAUST_VERSION``. To upgrade faust: re-read the
faust source each patch names, drop the patches upstream has fixed, then update
``FAUST_VERSION``.

The patches. ``apply(app)`` (called from ``streams.app.create_app``) installs 1-3 on one app;
``framestream worker`` runs ``Worker`` (4) in place of ``faust.Worker``. 1 and 2 close two
windows of the same recovery race; with 1 alone a worker with an empty store still skipped
records through 2 (tests/integration/test_recovery.py, moved workers).

1. Recovery seeks the source partitions to their committed offsets BEFORE it resumes them
   (faust-streaming #596, open upstream; #216 is the same order in ``_resume_streams``).
   Where: ``Recovery.on_recovery_completed`` (faust/tables/recovery.py) calls
   ``consumer.resume_partitions(<source partitions>)`` and then awaits
   ``consumer.perform_seek()``; flow is already active then (the changelog was just read
   through it). In that window the fetcher hands over source records from wherever aiokafka
   stands: ``_drain_messages`` (faust/transport/consumer.py) queues them for the agents and
   records their offsets as read; then ``app.flow_control.resume()`` (mode's
   ``FlowControlEvent.resume``) clears the queues. With no committed offset (a new group, or
   none committed yet) the seek moves nothing and the cleared records are never fetched again:
   skipped, and the next commit passes them. With a committed offset the seek goes back, but the
   batch in hand has set the read offset past it, so ``_drain_messages`` drops the re-fetched
   records as already read, and the partition's commit stops at the first of them
   (``Consumer._new_offset`` waits for the gap to be acked: a stall). A worker that starts with
   an empty table store (a new machine) always reads the changelog first, so it always runs
   this with flow active. ``_resume_streams`` (apps without tables: the detect stage) has the
   same order; there flow is stopped during the seek unless the previous assignment was empty.
   Fix, in both: seek while the source partitions are still paused, clear the queues and
   resume flow, and only then resume the partitions. Nothing of theirs can then be in hand or
   queued before the seek. Related, not patched here: #629 (partitions that stop fetching after
   a rebalance) and #606/#707 (``_new_offset`` commits past a head record still in flight when
   it is exactly one past the committed offset); the agents here ack in offset order per
   partition (streams/delivery.py), so only a record lost as above can make that gap.
2. A fetch returns records only of the partitions that were active when it began (the same
   race, from the fetch side; robinhood/faust#69 fixed it in 2018 with a lock that is gone).
   Where: ``Consumer._wait_next_records`` (faust/transport/consumer.py) hands the consumer
   thread its LIVE set of active partitions, and aiokafka's ``Fetcher.fetched_records``
   (aiokafka/consumer/fetcher.py) reads an empty set as "every assigned partition". When the
   recovery pauses the changelog partitions ("Done reading from changelog topics") while a
   fetch is waiting, the set becomes empty under it: the fetch then drains the records
   aiokafka has prefetched for the paused source partitions, moving their positions, and
   ``Consumer.getmany`` drops them (not active). With no committed offset nothing seeks back:
   the worker with an empty store skipped the first records of every source partition (seen
   here with patch 1 alone: about 10 detections records in one of two runs). Fix: fetch with a
   copy of the set taken when the fetch begins, and never with an empty one.
3. Tansu only: the consumer long-polls ``fetch_max_wait_ms`` instead of faust's literal 1500 ms
   (``_fetch_max_wait_ms`` of the AIOKafkaConsumer, which ``start()`` hands to its Fetcher;
   setting it before start is the one way in). Tansu answers a fetch of several partitions
   only after about half its max wait even when records are there (measured with aiokafka on a
   4-partition topic: 1500 ms -> 722 ms per record, 500 -> 222, 100 -> 22; one partition:
   2 ms), which would add ~0.7 s to every hop of the pipeline. Apache Kafka answers as soon as
   data arrives, so the kafka profile leaves it alone.
4. ``Worker``: faust's worker with a deadline on graceful shutdown and no spinner. On SIGTERM
   faust waits for every event in hand to be acked; an event that can never be (its actor
   died holding it) would block that forever. The first stop signal (``_schedule_shutdown``
   while ``_signal_stop_time`` is unset: mode-streaming's ``mode.Worker``) arms the caller's
   deadline. Held events are not committed, so exiting at the deadline loses nothing: the next
   worker reads them again. ``spinner`` goes because it writes terminal escapes into the JSON
   log stream.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import signal
from collections.abc import Callable
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

FAUST_DISTRIBUTION = "faust-streaming"
FAUST_VERSION = "0.15.3"  # the version whose source every patch here was written against


class FaustVersionError(RuntimeError):
    pass


def installed_faust_version() -> str:
    return importlib.metadata.version(FAUST_DISTRIBUTION)


def check_faust_version(installed: str | None = None) -> None:
    """Raise ``FaustVersionError`` unless the installed faust is the one the patches were written for."""
    installed = installed or installed_faust_version()
    if installed != FAUST_VERSION:
        raise FaustVersionError(
            f"streams/faust_patches.py patches private parts of {FAUST_DISTRIBUTION} {FAUST_VERSION} "
            f"(recovery order #596, Tansu fetch wait, worker shutdown deadline), but "
            f"{FAUST_DISTRIBUTION} {installed} is installed. Re-check each patch against the new "
            f"source, drop those fixed upstream, then set FAUST_VERSION = {installed!r}; or install "
            f"{FAUST_DISTRIBUTION}=={FAUST_VERSION} (the version pinned in pyproject.toml)."
        )


def apply(app: faust.App, *, fetch_max_wait_ms: int | None = None) -> None:
    """Patches 1-3 for ``app``: call right after creating it, before any table or agent exists.

    ``fetch_max_wait_ms`` (patch 3) only where the broker needs it (Tansu)."""
    check_faust_version()
    if "tables" in app.__dict__:  # faust.App.tables is a cached property: the manager exists already
        raise RuntimeError("faust_patches.apply() must run before the app's first table is declared")
    app.conf.TableManager = SeekFirstTableManager
    app.transport.Consumer = type("PatchedConsumer", (PatchedConsumer,), {"fetch_max_wait_ms": fetch_max_wait_ms})


# --- 1. Recovery: seek, then resume (#596, #216) ------------------------------------------------


class SeekFirstRecovery(Recovery):
    """``Recovery`` whose two resume paths seek the source partitions before resuming them.

    Both methods are faust 0.15.3's own, statement for statement, except where marked ``PATCH``."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callback_coros = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callback_coros:
            await asyncio.wait(callback_coros)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}"
            )
            return
        # PATCH (#596): faust resumed the source partitions here, before the seek, with flow active.
        sources = source_partitions(assignment, self._is_changelog_tp)
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.completed.set()
        self.log.dev("Resume stream partitions")
        self.app.flow_control.resume()  # clears the agents' queues: no source record can be in them yet
        consumer.resume_flow()
        consumer.resume_partitions(sources)  # PATCH (#596): only now, from the committed offsets
        await cast(Any, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_streams(self, generation_id: int = 0) -> None:
        app = self.app
        consumer = app.consumer
        await app.on_rebalance_complete.send()
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        if assignment:
            # PATCH (#216/#596): faust resumed the partitions before this seek; flow is active
            # here when the previous assignment was empty (no rebalance stopped it).
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        else:
            self.log.info("Resuming streams with empty assignment")
        self.completed.set()
        self.log.info("Resuming flow...")
        app.flow_control.resume()
        consumer.resume_flow()
        if assignment:
            self.log.dev("Resume stream partitions")
            consumer.resume_partitions(source_partitions(assignment, self._is_changelog_tp))  # PATCH: moved
        await cast(Any, app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


def source_partitions(assignment: set[TP], is_changelog: Callable[[TP], bool]) -> set[TP]:
    """The assigned partitions agents read (every one but the tables' changelogs)."""
    return {tp for tp in assignment if not is_changelog(tp)}


class SeekFirstTableManager(TableManager):
    """faust's ``TableManager``, building ``SeekFirstRecovery`` (``app.conf.TableManager`` is its one hook)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


# --- 2. Consumer: fetch only what was active when the fetch began; 3. Tansu fetch wait --------


def frozen_partitions(active: set[TP] | None) -> frozenset[TP] | None:
    """What a fetch may return: the partitions active now, copied (``None``: a client-only app, all)."""
    return None if active is None else frozenset(active)


class PatchedConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka ``Consumer``: fetches only the partitions active when a fetch begins (patch 2)
    and, when ``fetch_max_wait_ms`` is set, long-polls that long (patch 3)."""

    fetch_max_wait_ms: int | None = None

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        partitions = frozen_partitions(active_partitions)
        if partitions is not None and not partitions:
            return {}  # faust only fetches with some partition active; never ask aiokafka for "all"
        return await super()._getmany(cast(Any, partitions), timeout)

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        if self.fetch_max_wait_ms is None:
            return super()._new_consumer_thread()
        return _FetchWaitConsumerThread(self, self.fetch_max_wait_ms, loop=self.loop, beacon=self.beacon)


class _FetchWaitConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    def __init__(self, consumer: PatchedConsumer, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self._framestream_fetch_max_wait_ms = fetch_max_wait_ms

    def _create_worker_consumer(self, transport: aiokafka_driver.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # What AIOKafkaConsumer.start() hands to its Fetcher; faust passes a literal 1500 otherwise.
        consumer._fetch_max_wait_ms = self._framestream_fetch_max_wait_ms
        return consumer


# --- 4. Worker: shutdown deadline, no spinner --------------------------------------------------


class Worker(faust.Worker):
    """``faust.Worker`` that calls ``on_stop_signal`` once, on the first SIGTERM/SIGINT, and has no spinner."""

    def __init__(self, app: faust.App, *, on_stop_signal: Callable[[], None], **kwargs: Any) -> None:
        check_faust_version()
        super().__init__(app, **kwargs)
        self._on_stop_signal = on_stop_signal
        self.spinner = None  # it writes terminal escapes into the JSON log stream

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:  # set by the first call (mode.Worker): later signals pass through
            self._on_stop_signal()
        super()._schedule_shutdown(signal)
