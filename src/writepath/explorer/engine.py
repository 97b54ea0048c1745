"""Run schedules and search them: bounded-exhaustive (preemption bound K) and PCT random.

Bounded search is stateless model checking (CHESS, Musuvathi and Qadeer, PLDI 2007): each
schedule is re-executed from the start along a prefix of choices, then with option 0 (no
preemption) to the end. The tree of schedules is walked depth-first; a node's children change
one later decision to another option, kept if the schedule still has at most K preemptions (a
switch away from a task that could go on). Switches where the current task blocked or finished
cost nothing. Every leaf of the tree is run exactly once.

No state hashing and no partial-order reduction: the model's state (page cache, page tables,
generator frames) is not cheaply hashable, and the catalogue's races are exhausted at K = 2 in
well under a second each without them. The search is therefore sound and complete for the bound
in the plain sense: every schedule with at most K preemptions (under the fairness rule of
``writepath.sched``) is run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from writepath.explorer.choices import (
    PCTPolicy,
    PrefixPolicy,
    ReplayDivergence,
    ReplayPolicy,
    parse_schedule,
    preemptions,
    schedule_text,
)
from writepath.explorer.properties import check
from writepath.explorer.record import Tally
from writepath.results import RunResult
from writepath.run import TaskRun, release_machine, run_tasks
from writepath.scenario import Scenario
from writepath.sched import Policy

#: Schedules one bounded search may run before it stops and says it is incomplete: a scenario
#: with many tasks and points can have millions at K = 3; a search is meant to take seconds.
MAX_SCHEDULES = 200_000
#: PCT's bug depth when not given: the races of the catalogue need one or two preemptions.
DEFAULT_PCT_DEPTH = 3


def _record(scenario: Scenario, run: TaskRun) -> dict[str, Any]:
    result = run.result
    calls: dict[str, list[dict[str, Any]]] = {name: [] for name in scenario.tasks}
    for spec, res in zip(scenario.calls, result.calls, strict=True):
        calls[spec.task].append({"op": res.op, "ret": res.ret, "errno": res.errno})
    files = {
        name: {"size": f.size, "sha256": f.sha256()} for name, f in sorted(result.files.items())
    }
    violations = check(scenario, result, run.machine)
    return {
        "verdict": result.verdict,
        "calls": calls,
        "files": files,
        "violations": [list(v) for v in violations],
        "choices": [c.chosen for c in run.choices],
        "schedule": schedule_text(run.choices),
        "preemptions": preemptions(run.choices),
        "switches": sum(1 for c in run.choices if c.chosen),
    }


def run_one(
    scenario: Scenario, design: str, policy: Policy, keep_events: bool = False
) -> tuple[dict[str, Any], TaskRun]:
    """Run one schedule; its record (JSON-able) and the run (release its machine when done)."""
    run = run_tasks(scenario, design, policy, keep_events=keep_events)
    return _record(scenario, run), run


def _run_prefix(
    scenario: Scenario, design: str, prefix: list[int]
) -> tuple[dict[str, Any], list[Any]]:
    run = run_tasks(scenario, design, PrefixPolicy(prefix))
    rec = _record(scenario, run)
    release_machine(run.machine)
    return rec, run.choices


def children(prefix_len: int, choices: list[Any], bound: int) -> list[list[int]]:
    """The prefixes of a node's children, in depth-first order (later decisions first, so a
    stack pops the earliest first)."""
    out: list[list[int]] = []
    used = 0
    for i, c in enumerate(choices):
        if i >= prefix_len:
            cost = 1 if c.preemption else 0
            if used + cost <= bound:
                base = [x.chosen for x in choices[:i]]
                for j in range(1, c.options):
                    out.append([*base, j])
        if c.preemption and c.chosen:
            used += 1
    return out


def explore_subtree(
    scenario: Scenario, design: str, prefix: list[int], bound: int, budget: int
) -> tuple[Tally, bool]:
    """Run every schedule under ``prefix`` with at most ``bound`` preemptions (at most
    ``budget`` of them); the tally and whether the subtree was exhausted."""
    tally = Tally()
    stack = [prefix]
    while stack:
        if tally.schedules >= budget:
            return tally, False
        p = stack.pop()
        rec, choices = _run_prefix(scenario, design, p)
        tally.add(rec)
        stack.extend(reversed(children(len(p), choices, bound)))
    return tally, True


def frontier(
    scenario: Scenario, design: str, bound: int, want: int
) -> tuple[Tally, list[list[int]]]:
    """Expand the tree breadth-first from the root until ``want`` subtrees are pending; the
    schedules run on the way and the pending prefixes (each a disjoint subtree)."""
    tally = Tally()
    queue: list[list[int]] = [[]]
    while queue and len(queue) < want:
        p = queue.pop(0)
        rec, choices = _run_prefix(scenario, design, p)
        tally.add(rec)
        queue.extend(children(len(p), choices, bound))
    return tally, queue


def random_range(
    scenario: Scenario, design: str, seed: int, start: int, stop: int, depth: int, horizon: int
) -> Tally:
    """PCT schedules ``start .. stop - 1`` of ``seed``."""
    tally = Tally()
    for i in range(start, stop):
        rng = random.Random(f"{seed}:{i}")
        policy = PCTPolicy(rng, scenario.tasks, depth, horizon)
        rec, run = run_one(scenario, design, policy)
        release_machine(run.machine)
        tally.add(rec)
    return tally


def horizon_of(scenario: Scenario, design: str) -> int:
    """Decisions in the default schedule: the range PCT places its priority changes in."""
    _, choices = _run_prefix(scenario, design, [])
    return max(len(choices), 1)


@dataclass
class Replay:
    record: dict[str, Any]
    result: RunResult
    unused: list[int] = field(default_factory=list)


def replay(scenario: Scenario, design: str, schedule: str) -> Replay:
    """Run exactly the given schedule, keeping the events (the trace); ReplayDivergence if the
    schedule cannot be followed, ScheduleError if it cannot be read."""
    policy = ReplayPolicy(parse_schedule(schedule))
    rec, run = run_one(scenario, design, policy, keep_events=True)
    release_machine(run.machine)
    unused = policy.unused()
    if unused:
        raise ReplayDivergence(
            f"the run made {policy.k} decisions; the schedule names decision {unused[0]}"
        )
    return Replay(rec, run.result, unused)


@dataclass
class Search:
    """The result of one search, in the --json form of ``to_json``."""

    scenario: str
    design: str
    preemptions: int | None
    complete: bool
    tally: Tally
    seconds: float
    mode: str  # "bounded" or "random"

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "design": self.design,
            "preemptions": self.preemptions,
            "schedules": self.tally.schedules,
            "complete": self.complete,
            "outcomes": self.tally.outcome_list(),
            "violations": self.tally.violation_list(),
            "seconds": round(self.seconds, 3),
        }


def now() -> float:
    return time.perf_counter()


def matching_schedules(
    scenario: Scenario,
    design: str,
    bound: int,
    wanted: Any,
    limit: int = MAX_SCHEDULES,
) -> list[tuple[dict[str, Any], RunResult]]:
    """Every schedule within the bound whose run (with its events) satisfies ``wanted(result)``,
    simplest first: how a test or the race oracle finds the schedule that shows a claim."""
    found: list[tuple[dict[str, Any], RunResult]] = []
    stack: list[list[int]] = [[]]
    runs = 0
    while stack and runs < limit:
        p = stack.pop()
        run = run_tasks(scenario, design, PrefixPolicy(p), keep_events=True)
        runs += 1
        rec = _record(scenario, run)
        if wanted(run.result):
            found.append((rec, run.result))
        release_machine(run.machine)
        stack.extend(reversed(children(len(p), run.choices, bound)))
    found.sort(key=lambda f: (f[0]["preemptions"], f[0]["switches"], f[0]["choices"]))
    return found


def short_copies(result: RunResult) -> int:
    """Atomic copies that moved fewer bytes than asked: the short-copy path was taken."""
    from writepath.kernel import tracepoints as tp

    short = 0
    for kind, _pid, asked, copied in result.events:
        if (
            kind == tp.COPY
            and isinstance(asked, int)
            and isinstance(copied, int)
            and copied < asked
        ):
            short += 1
    return short
