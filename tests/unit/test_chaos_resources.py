"""The soak's leak check (framestream.chaos.report.resource_leaks) on made-up samples, and the
/proc reading it rests on (framestream.chaos.monitor.sample_process) on this test process."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

from framestream.chaos.monitor import ProcessResources, ResourceSample, sample_process
from framestream.chaos.report import resource_leaks


def process(samples: list[tuple[float, float, int, int, int]]) -> ProcessResources:
    """(at_s, rss_mb, fds, other_fds, threads) every 10 s of a persist worker."""
    tracked = ProcessResources("persist", 4242, started_s=0.0)
    tracked.samples = [ResourceSample(at, rss, fds, threads, other) for at, rss, fds, other, threads in samples]
    return tracked


def leaks(tracked: ProcessResources) -> list[str]:
    return [violation.check for violation in resource_leaks(SimpleNamespace(resources={tracked.pid: tracked}))]


def minutes(count: int) -> range:
    return range(0, count * 60 + 1, 10)


def test_a_pool_that_fills_once_early_is_not_a_leak() -> None:
    """chDB at ~2 minutes: +124 threads at once, then flat; its /proc stat files climb towards 3 per thread."""
    samples = [
        (at, 440.0, 60 + (0 if at < 120 else min(3 * 124, at // 2)), 60, 30 if at < 120 else 154) for at in minutes(12)
    ]
    tracked = process(samples)
    assert tracked.first is not None and tracked.last is not None
    assert tracked.last.threads - tracked.first.threads > 100 and tracked.last.fds - tracked.first.fds > 200
    assert leaks(tracked) == []


def test_steady_growth_is_a_leak_of_each_kind() -> None:
    """One thread, two sockets and 1 MB every 10 s, all the way through."""
    samples = [(at, 400.0 + at / 2, 60 + at // 5, 60 + at // 5, 30 + at // 10) for at in minutes(20)]
    assert sorted(leaks(process(samples))) == ["fds", "memory", "threads"]


def test_short_lived_processes_are_not_judged() -> None:
    samples = [(at, 400.0 + at, 60 + at, 60 + at, 30 + at) for at in minutes(9)]
    assert leaks(process(samples)) == []


def test_midlife_is_the_first_sample_past_half_the_sampled_life() -> None:
    tracked = process([(at, 1.0, 1, 1, 1) for at in (30.0, 40.0, 50.0, 90.0)])
    assert tracked.midlife is not None and tracked.midlife.at_s == 90.0
    assert tracked.lifetime_s == 60.0


def test_sample_process_counts_this_process_threads_and_descriptors() -> None:
    started = threading.Event()
    stop = threading.Event()

    def idle() -> None:
        started.set()
        stop.wait()

    before = sample_process(os.getpid(), 0.0)
    worker = threading.Thread(target=idle)
    worker.start()
    started.wait()
    read, write = os.pipe()
    try:
        during = sample_process(os.getpid(), 1.0)
    finally:
        os.close(read)
        os.close(write)
        stop.set()
        worker.join()
    assert before is not None and during is not None
    assert during.threads == before.threads + 1
    assert during.other_fds == before.other_fds + 2 and during.fds >= during.other_fds
    assert before.rss_mb > 0
    assert sample_process(2**22 + 1, 0.0) is None  # above pid_max: no such process
