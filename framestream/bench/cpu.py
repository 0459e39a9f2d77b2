"""CPU time per process of a benchmark's stack, read from ``/proc`` (Linux), no extra package.

A process is counted with all its live descendants (tritonserver's Python-backend stubs)
and what its exited children left in cutime/cstime. Sample before and after a measured
window; the difference is the CPU each process spent in it.

    pids = {"broker": find_child("kafka.Kafka"), "worker": worker.pid}
    before = sample(pids)
    ...  # the measured window
    spent = cpu_seconds(before, sample(pids))   # {"broker": 1.2, "worker": 0.8}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def read_stat(pid: int) -> ProcStat | None:
    """One process's /proc/<pid>/stat, or None if it is gone (or not Linux)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ProcStat(pid=pid, ppid=int(fields[1]), ticks=utime + stime + cutime + cstime)


def read_cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def all_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            stats[stat.pid] = stat
    return stats


def descendants(root: int, stats: Mapping[int, ProcStat]) -> list[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        frontier.extend(children.get(pid, ()))
    return found


def find_children(*needles: str, parent: int | None = None) -> list[int]:
    """Direct children of ``parent`` (this process) whose command line holds every needle."""
    parent = os.getpid() if parent is None else parent
    return sorted(
        stat.pid
        for stat in all_stats().values()
        if stat.ppid == parent and all(needle in read_cmdline(stat.pid) for needle in needles)
    )


def sample(pids: Mapping[str, int | None]) -> dict[str, int]:
    """CPU ticks so far of each named process with its descendants (missing ones are left out).
    This process's own entry leaves out its exited children (they are not its work)."""
    stats = all_stats()
    ticks = {}
    for name, pid in pids.items():
        if pid is None or pid not in stats:
            continue
        if pid == os.getpid():  # the bench itself: its children are measured under their own names
            ticks[name] = stats[pid].ticks - _exited_children_ticks(pid)
        else:
            ticks[name] = sum(stats[member].ticks for member in descendants(pid, stats))
    return ticks


def _exited_children_ticks(pid: int) -> int:
    """cutime + cstime of ``pid``: its exited, waited-for children."""
    stat = (PROC / str(pid) / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[13]) + int(fields[14])


def cpu_seconds(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds per name between two samples (names present in both)."""
    return {name: (after[name] - before[name]) / TICKS_PER_S for name in after if name in before}
