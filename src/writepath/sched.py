"""Drive model tasks: run their generators, block them on locks, find deadlocks.

Each task is a generator of kernel code (``writepath.kernel.task``). It yields ``SchedPoint``s
where the kernel could switch tasks and ``WaitOn`` where it sleeps for a lock. The scheduler runs
one task until it blocks or finishes, then picks the next runnable one (``pick`` can be replaced
by an explorer to try other interleavings). A task waiting for a lock it holds itself, or a set
of tasks none of which can run, is a deadlock; the evidence is the wait-for cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from enum import StrEnum

from writepath.kernel import tracepoints as tp
from writepath.kernel.kernel import Kernel
from writepath.kernel.task import Livelock, SchedPoint, Stuck, Task, WaitOn
from writepath.kernel.tracepoints import Event

TaskBody = Generator["SchedPoint | WaitOn", None, object]


class Verdict(StrEnum):
    OK = "ok"
    #: Every call returned, and a file holds uninitialized memory inside i_size (judged from
    #: the end state by run.run_scenario, not by the scheduler).
    STALE_DATA = "stale-data"
    DEADLOCK = "deadlock"
    LIVELOCK = "livelock"


@dataclass
class Runnable:
    task: Task
    body: TaskBody
    waiting: WaitOn | None = None
    done: bool = False
    result: object = None


@dataclass
class Outcome:
    verdict: Verdict
    evidence: str = ""
    results: dict[int, object] = field(default_factory=dict)


def _first_runnable(entries: list[Runnable], current: Runnable | None) -> Runnable | None:
    """Default policy: keep running the current task; else the first task that can run."""
    if current is not None and not current.done and current.waiting is None:
        return current
    for e in entries:
        if not e.done and (e.waiting is None or e.waiting.lock.owner is None):
            return e
    return None


class Scheduler:
    def __init__(
        self,
        kernel: Kernel,
        pick: Callable[[list[Runnable], Runnable | None], Runnable | None] = _first_runnable,
        max_steps: int = 10_000_000,
    ) -> None:
        self.kernel = kernel
        self.entries: list[Runnable] = []
        self.pick = pick
        self.max_steps = max_steps
        kernel.others_can_run = self._others_can_run

    def spawn(self, task: Task, body: TaskBody) -> None:
        self.entries.append(Runnable(task, body))

    def _others_can_run(self, task: Task) -> bool:
        return any(
            e.task is not task
            and not e.done
            and (e.waiting is None or e.waiting.lock.owner is None)
            for e in self.entries
        )

    def _cycle(self, start: Runnable) -> str:
        by_task = {e.task.pid: e for e in self.entries}
        seen: list[str] = []
        e: Runnable | None = start
        visited: set[int] = set()
        while e is not None and e.waiting is not None and e.task.pid not in visited:
            visited.add(e.task.pid)
            lock = e.waiting.lock
            holder = lock.owner
            seen.append(
                f"task {e.task.pid} waits for {lock.lock_name()} held by task "
                f"{holder.pid if holder else '-'}"
            )
            e = by_task.get(holder.pid) if holder is not None else None
        return "; ".join(seen)

    def run(self) -> Outcome:
        """Run every task to its end, or to a proven deadlock or livelock."""
        outcome = Outcome(Verdict.OK)
        current: Runnable | None = None
        steps = 0
        while True:
            current = self.pick(self.entries, current)
            if current is None:
                blocked = [e for e in self.entries if not e.done]
                if not blocked:
                    return outcome
                evidence = self._cycle(blocked[0])
                self.kernel.events.append((tp.DEADLOCK, blocked[0].task.pid, evidence, None))
                return Outcome(Verdict.DEADLOCK, evidence, outcome.results)
            current.waiting = None
            body = current.body
            try:
                while True:
                    point = next(body)
                    steps += 1
                    if type(point) is WaitOn:
                        if point.lock.owner is current.task:
                            current.waiting = point
                            evidence = self._cycle(current)
                            self.kernel.events.append(
                                (tp.DEADLOCK, current.task.pid, evidence, None)
                            )
                            return Outcome(Verdict.DEADLOCK, evidence, outcome.results)
                        current.waiting = point
                        break
                    if steps >= self.max_steps:
                        raise Livelock(f"no task finished within {self.max_steps} steps")
                    if self.pick is not _first_runnable and len(self.entries) > 1:
                        break  # let an explorer choose at every scheduling point
            except StopIteration as stop:
                current.done = True
                current.result = stop.value
                outcome.results[current.task.pid] = stop.value
            except Stuck as stuck:
                verdict = Verdict.LIVELOCK if isinstance(stuck, Livelock) else Verdict.DEADLOCK
                kind = tp.LIVELOCK if verdict is Verdict.LIVELOCK else tp.DEADLOCK
                self.kernel.events.append(
                    (kind, current.task.pid, stuck.evidence, current.task.stalls)
                )
                return Outcome(verdict, stuck.evidence, outcome.results)


#: How many events ``run_alone`` lets the log hold before it hands them to ``drain``.
DRAIN_EVERY = 4096


def run_alone(
    kernel: Kernel,
    task: Task,
    body: TaskBody,
    drain: Callable[[list[Event]], None] | None = None,
) -> Outcome:
    """Run one task with nobody else in the machine: ``Scheduler.run`` without the bookkeeping.

    With a single task every scheduling point just continues it, and any lock wait is a
    deadlock: no one else could ever release the lock.

    With ``drain``, the event log is handed to it and emptied whenever it holds DRAIN_EVERY
    events or more at a scheduling point, so a long run keeps a bounded log (the caller folds
    the events into counters). The caller drains what is left after the run.
    """
    kernel.others_can_run = _nobody
    events = kernel.events
    try:
        while True:
            point = next(body)
            if type(point) is WaitOn:
                holder = point.lock.owner
                evidence = (
                    f"task {task.pid} waits for {point.lock.lock_name()} held by task "
                    f"{holder.pid if holder is not None else '-'}"
                )
                events.append((tp.DEADLOCK, task.pid, evidence, None))
                return Outcome(Verdict.DEADLOCK, evidence)
            if drain is not None and len(events) >= DRAIN_EVERY:
                drain(events)
                # Emptied in place: every task's ``emit`` is this list's bound append.
                events.clear()
    except StopIteration as stop:
        return Outcome(Verdict.OK, "", {task.pid: stop.value})
    except Stuck as stuck:
        verdict = Verdict.LIVELOCK if isinstance(stuck, Livelock) else Verdict.DEADLOCK
        kind = tp.LIVELOCK if verdict is Verdict.LIVELOCK else tp.DEADLOCK
        events.append((kind, task.pid, stuck.evidence, task.stalls))
        return Outcome(verdict, stuck.evidence)


def _nobody(task: Task) -> bool:
    return False
