"""Policies: who runs at each point where several tasks can, and the schedule text.

Every decision goes through ``Scheduler._pick`` and is recorded (``sched.Choice``). Option 0 is
"keep running the current task" wherever that is possible, so a schedule is its non-zero choices
only: ``"3:dropper,9:main"`` means "at decision 3 run dropper, at decision 9 run main, else keep
going". ``-`` is the schedule with no such choice. Replaying a schedule reproduces the run; a
decision that cannot be taken (the named task cannot run there) is a ``ReplayDivergence``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from writepath.sched import Choice, Runnable

EMPTY_SCHEDULE = "-"
_ENTRY_RE = re.compile(r"^(\d{1,9}):([A-Za-z0-9._-]{1,64})$")


class ReplayDivergence(Exception):
    """A replayed schedule asked for a task that could not run at that decision."""


class ScheduleError(ValueError):
    """Schedule text that is not ``-`` or ``N:TASK[,N:TASK...]`` with increasing N."""


def parse_schedule(text: str) -> dict[int, str]:
    text = text.strip()
    if text in ("", EMPTY_SCHEDULE):
        return {}
    out: dict[int, str] = {}
    last = -1
    for part in text.split(","):
        m = _ENTRY_RE.match(part.strip())
        if not m:
            raise ScheduleError(f"schedule entry {part.strip()[:40]!r} is not DECISION:TASK")
        k = int(m.group(1))
        if k <= last:
            raise ScheduleError(f"schedule decisions must increase: {k} after {last}")
        last = k
        out[k] = m.group(2)
    return out


def schedule_text(choices: Sequence[Choice]) -> str:
    parts = [f"{k}:{c.task}" for k, c in enumerate(choices) if c.chosen != 0]
    return ",".join(parts) if parts else EMPTY_SCHEDULE


def preemptions(choices: Sequence[Choice]) -> int:
    return sum(1 for c in choices if c.preemption and c.chosen != 0)


class PrefixPolicy:
    """Follow a list of option indexes, then always option 0 (the bounded search's policy)."""

    def __init__(self, prefix: Sequence[int]) -> None:
        self.prefix = list(prefix)
        self.k = 0

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int:
        k = self.k
        self.k += 1
        if k < len(self.prefix):
            if self.prefix[k] >= len(alternatives):
                raise ReplayDivergence(
                    f"decision {k}: option {self.prefix[k]} of {len(alternatives)}"
                )
            return self.prefix[k]
        return 0


class ReplayPolicy:
    """Follow schedule text: the named task at the named decisions, option 0 elsewhere."""

    def __init__(self, schedule: dict[int, str]) -> None:
        self.schedule = schedule
        self.k = 0

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int:
        k = self.k
        self.k += 1
        want = self.schedule.get(k)
        if want is None:
            return 0
        for j, e in enumerate(alternatives):
            if e.task.comm == want:
                return j
        names = ", ".join(e.task.comm for e in alternatives)
        raise ReplayDivergence(f"decision {k} at {point}: {want} cannot run (can: {names})")

    def unused(self) -> list[int]:
        return [k for k in self.schedule if k >= self.k]


class PCTPolicy:
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): each task gets a
    random priority; the highest-priority runnable task runs; at ``depth - 1`` random decisions
    (out of ``horizon``) the running task's priority drops below every other. One seeded
    ``random.Random`` per schedule, so schedule i of seed S is the same on any worker."""

    def __init__(self, rng: random.Random, tasks: Sequence[str], depth: int, horizon: int) -> None:
        order = list(tasks)
        rng.shuffle(order)
        self.priority = {name: depth + i for i, name in enumerate(order)}
        span = max(horizon, 1)
        self.change = {rng.randrange(span): depth - 1 - i for i in range(max(depth - 1, 0))}
        self.k = 0

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int:
        k = self.k
        self.k += 1
        low = self.change.get(k)
        if low is not None and preemption:
            self.priority[alternatives[0].task.comm] = low
        best = max(range(len(alternatives)), key=lambda j: self.priority[alternatives[j].task.comm])
        return best
