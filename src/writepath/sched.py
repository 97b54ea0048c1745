"""Drive model tasks: run their generators, block them on locks, find deadlocks.

Each task is a generator of kernel code (``writepath.kernel.task``). It yields ``SchedPoint``s
where the kernel could switch tasks and ``WaitOn`` where it sleeps for a lock. ``Scheduler`` runs
the tasks one step (one scheduling point to the next) at a time; at every point where more than
one task could run, a ``Policy`` object chooses which, and the choice is recorded
(``Scheduler.choices``), so the explorer (``writepath.explorer``) can enumerate, sample and
replay interleavings through this one engine. Alternative 0 is always "keep running the current
task", so a schedule with fewer non-zero choices has fewer preemptions.

A task waiting for a lock it holds itself, or a set of tasks none of which can run, is a
deadlock; the evidence is the wait-for cycle as (pid, lock, holder) tuples. A task that repeats a
retry without progress while no other task can run is a livelock (``task.note_no_progress``).

``run_alone`` is the same engine specialised to one task, where every scheduling point just
continues it: the single-task runs of ``writepath run`` take it for speed.

Fairness: a task that spins without progress (``Task.stalls`` at least ``STALL_YIELD``) while
another task can run is switched away from at its next scheduling point, as a preemptive kernel
would eventually do; that switch is not a choice and costs no preemption. Without it a bounded
search could only report such a spin by exhausting ``max_steps``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from writepath.kernel import tracepoints as tp
from writepath.kernel.kernel import Kernel
from writepath.kernel.task import Livelock, SchedPoint, Stuck, Task, WaitOn
from writepath.kernel.tracepoints import Event

TaskBody = Generator["SchedPoint | WaitOn", None, object]

#: Consecutive no-progress iterations after which a spinning task yields to another runnable
#: task (see the module docstring). Two: one zero-progress pass is the normal short-copy retry.
STALL_YIELD = 2

#: Steps (scheduling points passed) after which a multi-task run is called a livelock: far above
#: what any catalogue race needs (a few hundred), far below what would make a search slow.
DEFAULT_MAX_STEPS = 200_000


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
    #: The name of the scheduling point the task stopped at last.
    at: str = "start"


class WaitEdge(NamedTuple):
    """One edge of a wait-for graph: ``pid`` waits for ``lock`` held by ``holder``."""

    pid: int
    lock: str
    holder: int | None


@dataclass(slots=True)
class Outcome:
    verdict: Verdict
    evidence: str = ""
    results: dict[int, object] = field(default_factory=dict)
    cycle: tuple[WaitEdge, ...] = ()


class Choice(NamedTuple):
    """One recorded decision: at scheduling point ``point`` there were ``options`` tasks that
    could run (option 0 the current one when ``preemption``); option ``chosen`` ran."""

    options: int
    chosen: int
    preemption: bool
    task: str
    point: str


class Policy(Protocol):
    """Chooses who runs at a point where several tasks can. ``alternatives[0]`` is the current
    task when ``preemption`` is true (choosing another is a preemption); otherwise the current
    task blocked or finished and the alternatives are the runnable tasks in pid order."""

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int: ...


class KeepRunning:
    """The default policy: never preempt; when the current task stops, the lowest pid runs."""

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int:
        return 0


def _can_run(e: Runnable) -> bool:
    return not e.done and (e.waiting is None or e.waiting.lock.owner is None)


def _edge(e: Runnable) -> WaitEdge:
    assert e.waiting is not None
    lock = e.waiting.lock
    holder = lock.owner
    return WaitEdge(e.task.pid, lock.lock_name(), holder.pid if holder is not None else None)


def _say(cycle: Sequence[WaitEdge]) -> str:
    return "; ".join(
        f"task {w.pid} waits for {w.lock} held by task {w.holder if w.holder is not None else '-'}"
        for w in cycle
    )


def _stuck_outcome(kernel: Kernel, task: Task, stuck: Stuck, results: dict[int, object]) -> Outcome:
    """The verdict a Stuck proof gives, logged as the event the trace shows."""
    verdict = Verdict.LIVELOCK if isinstance(stuck, Livelock) else Verdict.DEADLOCK
    kind = tp.LIVELOCK if verdict is Verdict.LIVELOCK else tp.DEADLOCK
    kernel.events.append((kind, task.pid, stuck.evidence, task.stalls))
    return Outcome(verdict, stuck.evidence, results)


def _deadlock(
    kernel: Kernel, pid: int, cycle: tuple[WaitEdge, ...], results: dict[int, object]
) -> Outcome:
    evidence = _say(cycle)
    kernel.events.append((tp.DEADLOCK, pid, evidence, None))
    return Outcome(Verdict.DEADLOCK, evidence, results, cycle)


class Scheduler:
    """The one engine: spawn tasks, then ``run()`` them under a policy to their end or to a
    proven deadlock or livelock."""

    def __init__(
        self,
        kernel: Kernel,
        policy: Policy | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
    ) -> None:
        self.kernel = kernel
        self.entries: list[Runnable] = []
        self.policy: Policy = policy if policy is not None else KeepRunning()
        self.max_steps = max_steps
        self.choices: list[Choice] = []
        self.steps = 0
        kernel.others_can_run = self._others_can_run

    def spawn(self, task: Task, body: TaskBody) -> None:
        self.entries.append(Runnable(task, body))

    def _others_can_run(self, task: Task) -> bool:
        return any(e.task is not task and _can_run(e) for e in self.entries)

    def _cycle(self, start: Runnable) -> tuple[WaitEdge, ...]:
        by_task = {e.task.pid: e for e in self.entries}
        edges: list[WaitEdge] = []
        e: Runnable | None = start
        visited: set[int] = set()
        while e is not None and e.waiting is not None and e.task.pid not in visited:
            visited.add(e.task.pid)
            edge = _edge(e)
            edges.append(edge)
            e = by_task.get(edge.holder) if edge.holder is not None else None
        return tuple(edges)

    def _pick(self, current: Runnable | None) -> Runnable | None:
        enabled = [e for e in self.entries if _can_run(e)]
        if not enabled:
            return None
        preemption = current is not None and current in enabled
        if preemption:
            assert current is not None
            others = [e for e in enabled if e is not current]
            if others and current.task.stalls >= STALL_YIELD:
                # Fairness: a spinning task gives way (no choice of the policy's, no preemption).
                alternatives = others
                preemption = False
            else:
                alternatives = [current, *others]
        else:
            alternatives = enabled
        if len(alternatives) == 1:
            return alternatives[0]
        point = current.at if current is not None else "start"
        index = self.policy.choose(alternatives, preemption, point)
        if not 0 <= index < len(alternatives):
            raise ValueError(f"policy chose {index} of {len(alternatives)} alternatives")
        chosen = alternatives[index]
        self.choices.append(Choice(len(alternatives), index, preemption, chosen.task.comm, point))
        return chosen

    def run(self) -> Outcome:
        """Run every task to its end, or to a proven deadlock or livelock."""
        results: dict[int, object] = {}
        current: Runnable | None = None
        while True:
            current = self._pick(current)
            if current is None:
                blocked = [e for e in self.entries if not e.done]
                if not blocked:
                    return Outcome(Verdict.OK, "", results)
                return _deadlock(self.kernel, blocked[0].task.pid, self._cycle(blocked[0]), results)
            current.waiting = None
            try:
                point = next(current.body)
            except StopIteration as stop:
                current.done = True
                current.at = "exit"
                current.result = stop.value
                results[current.task.pid] = stop.value
                continue
            except Stuck as stuck:
                return _stuck_outcome(self.kernel, current.task, stuck, results)
            self.steps += 1
            if type(point) is WaitOn:
                current.waiting = point
                current.at = f"wait:{point.lock.lock_name()}"
                if point.lock.owner is current.task:
                    return _deadlock(self.kernel, current.task.pid, self._cycle(current), results)
            elif type(point) is SchedPoint:
                current.at = point.name
            else:
                code = getattr(current.body, "gi_code", None)
                where = code.co_qualname if code is not None else repr(current.body)
                raise TypeError(f"{where} yielded {point!r}, which is not a scheduling point")
            if self.steps >= self.max_steps:
                return _stuck_outcome(
                    self.kernel,
                    current.task,
                    Livelock(f"no task finished within {self.max_steps} scheduling points"),
                    results,
                )


#: How many events ``run_alone`` lets the log hold before it hands them to ``drain``.
DRAIN_EVERY = 4096


def run_alone(
    kernel: Kernel,
    task: Task,
    body: TaskBody,
    drain: Callable[[list[Event]], None] | None = None,
) -> Outcome:
    """``Scheduler.run`` for one task with nobody else in the machine, without the bookkeeping.

    With a single task every scheduling point just continues it, and any lock wait is a
    deadlock: no one else could ever release the lock.

    With ``drain``, the event log is handed to it and emptied whenever it holds DRAIN_EVERY
    events or more at a scheduling point, so a long run keeps a bounded log (the caller folds
    the events into counters). The caller drains what is left after the run.
    """
    kernel.others_can_run = _nobody
    events = kernel.events
    result: list[object] = []
    try:
        # A for loop over a generator that returns None raises no StopIteration to catch:
        # _collect keeps the body's return value instead.
        for point in _collect(body, result):
            if type(point) is WaitOn:
                holder = point.lock.owner
                edge = WaitEdge(
                    task.pid, point.lock.lock_name(), holder.pid if holder is not None else None
                )
                return _deadlock(kernel, task.pid, (edge,), {})
            if drain is not None and len(events) >= DRAIN_EVERY:
                drain(events)
                # Emptied in place: every task's ``emit`` is this list's bound append.
                events.clear()
    except Stuck as stuck:
        return _stuck_outcome(kernel, task, stuck, {})
    return Outcome(OK, "", {task.pid: result[0]}, ())


def _collect(body: TaskBody, out: list[object]) -> Generator[SchedPoint | WaitOn, None, None]:
    out.append((yield from body))


def _nobody(task: Task) -> bool:
    return False


#: Verdict.OK without the enum attribute lookup, for run_alone's every call.
OK = Verdict.OK
