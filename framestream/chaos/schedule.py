"""A seeded fault schedule: which fault, on what, at which second of the soak.

    schedule = build_schedule(seed=1, duration_s=1800, kinds=ALL_KINDS)
    for fault in schedule: ...   # sorted by ``at_s``; every kind at least ``min_each`` times

The same seed and arguments give the same schedule, so a failing soak can be rerun. Only
*when* a fault is due is fixed here: the runner defers a fault whose target is still down
from an earlier one (one broker down at a time, a worker is not paused while it is dead).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class FaultKind(str, Enum):
    KILL = "kill"  # SIGKILL a worker (ingest, detect, alert, persist), restart it, sometimes as a new worker id
    PAUSE = "pause"  # SIGSTOP a worker for longer than its session timeout, then SIGCONT
    TRITON = "triton"  # SIGKILL tritonserver, start it again
    BROKER = "broker"  # SIGKILL one Kafka node of the three, restart it
    MALFORMED = "malformed"  # a burst of garbage records on the frames or the detections topic


ALL_KINDS = tuple(FaultKind)
WORKERS = ("ingest", "detect", "alert", "persist")
MALFORMED_TOPICS = ("frames", "detections")
# Workers whose replacement may come up under a new worker id (an empty local store), as on
# another machine. Ingest has no worker id.
MOVABLE = ("detect", "alert", "persist")


@dataclass(frozen=True)
class Fault:
    """One scheduled fault. ``target``: a worker name, a broker index, a topic, or "" (Triton);
    ``down_s``: how long the target stays killed or paused; ``new_id``: restart under a new id;
    ``count``: records of a malformed burst."""

    index: int
    at_s: float
    kind: FaultKind
    target: str = ""
    down_s: float = 0.0
    new_id: bool = False
    count: int = 0

    def describe(self) -> str:
        if self.kind is FaultKind.MALFORMED:
            return f"malformed x{self.count} on {self.target}"
        moved = " (new worker id)" if self.new_id else ""
        where = f" {self.target}" if self.target else ""
        return f"{self.kind.value}{where} for {self.down_s:.1f}s{moved}"


def parse_workers(text: str) -> tuple[str, ...]:
    """``"persist,detect"`` -> the workers kills and pauses may hit; an unknown name raises ``ValueError``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKERS]
    if unknown or not names:
        raise ValueError(f"unknown workers {unknown or names}; choose from {', '.join(WORKERS)}")
    return tuple(dict.fromkeys(names))


def parse_kinds(text: str) -> tuple[FaultKind, ...]:
    """``"kill,pause"`` -> kinds; an unknown name raises ``ValueError`` listing the known ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {kind.value: kind for kind in FaultKind}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"unknown fault kinds {unknown or names}; choose from {', '.join(known)}")
    return tuple(dict.fromkeys(known[name] for name in names))


def build_schedule(
    *,
    seed: int,
    duration_s: float,
    kinds: tuple[FaultKind, ...] = ALL_KINDS,
    mean_interval_s: float = 15.0,
    min_each: int = 1,
    warmup_s: float = 20.0,
    session_timeout_s: float = 10.0,
    brokers: int = 3,
    workers: tuple[str, ...] = WORKERS,
) -> list[Fault]:
    """Faults at uniformly random seconds in ``[warmup_s, duration_s)``, about one every
    ``mean_interval_s``; the kinds are drawn at random, each at least ``min_each`` times.
    Kills and pauses hit one of ``workers``."""
    if duration_s <= warmup_s:
        raise ValueError(f"duration {duration_s}s leaves no time after the {warmup_s}s warm-up")
    if not kinds:
        raise ValueError("no fault kinds to schedule")
    if not workers or set(workers) - set(WORKERS):
        raise ValueError(f"workers must be some of {WORKERS}, got {workers}")
    rng = random.Random(seed)
    total = max(len(kinds) * min_each, round((duration_s - warmup_s) / mean_interval_s))
    drawn = [kind for kind in kinds for _ in range(min_each)]
    drawn += [rng.choice(kinds) for _ in range(total - len(drawn))]
    rng.shuffle(drawn)
    times = sorted(rng.uniform(warmup_s, duration_s) for _ in drawn)
    return [
        _fault(index, at_s, kind, rng, session_timeout_s, brokers, workers)
        for index, (at_s, kind) in enumerate(zip(times, drawn, strict=True))
    ]


def _fault(
    index: int,
    at_s: float,
    kind: FaultKind,
    rng: random.Random,
    session_s: float,
    brokers: int,
    workers: tuple[str, ...],
) -> Fault:
    if kind is FaultKind.KILL:
        target = rng.choice(workers)
        new_id = target in MOVABLE and rng.random() < 0.3
        return Fault(index, at_s, kind, target, down_s=rng.uniform(0.5, 5.0), new_id=new_id)
    if kind is FaultKind.PAUSE:
        return Fault(index, at_s, kind, rng.choice(workers), down_s=session_s + rng.uniform(2.0, 8.0))
    if kind is FaultKind.TRITON:
        return Fault(index, at_s, kind, "", down_s=rng.uniform(2.0, 10.0))
    if kind is FaultKind.BROKER:
        return Fault(index, at_s, kind, str(rng.randrange(brokers)), down_s=rng.uniform(3.0, 15.0))
    return Fault(index, at_s, kind, rng.choice(MALFORMED_TOPICS), count=rng.randint(3, 12))
