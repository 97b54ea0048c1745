"""Spread a search over workers: a local process pool by default, Dask distributed on request.

A worker gets the scenario's path (it loads and validates the file itself), the design and a
list of subtree prefixes or PCT schedule indexes; it returns its tally as JSON text. Nothing a
worker builds is pickled back. Since tallies fold order-independently and every subtree or index
is assigned whatever the number of workers, the result does not depend on ``jobs`` nor on the
back-end.

Back-ends are picked by name (``BACKENDS``) and the distributed one is imported only when
picked, so Dask stays an optional extra (``writepath[distributed]``).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Protocol

from writepath.explorer.engine import (
    DEFAULT_PCT_DEPTH,
    MAX_SCHEDULES,
    Search,
    explore_subtree,
    frontier,
    horizon_of,
    now,
    random_range,
)
from writepath.explorer.record import Tally
from writepath.scenario import Scenario, load_scenario

#: ``local``: a process pool on this machine; ``dask``: Dask distributed (optional extra).
BACKENDS = ("local", "dask")
#: Subtrees handed out per worker: enough to even out subtrees of very different sizes.
SUBTREES_PER_JOB = 8

#: A unit of work: a module-level function of this module (shipped by reference, never as
#: code) and its arguments, which are only str, int and lists of int.
JobArgs = tuple[str | int | list[list[int]], ...]
Job = tuple[Callable[..., str], JobArgs]


class Backend(Protocol):
    """Where the jobs of one search run.

    A back-end receives a sequence of jobs, each a module-level function of this module and
    plain arguments (the scenario's *path*, never a parsed scenario: each worker loads and
    validates the file itself), and returns each job's result, a JSON text, in the order the
    jobs were given, whatever order they finished in. The caller merges the results in that
    fixed order, so a search gives the same result on every back-end and with any number of
    workers. A back-end returns nothing else from a worker (no pickled objects a scenario could
    shape), and re-raises a job's failure.

    ``jobs`` is the number of shares the caller splits a search into (for the local pool, its
    processes; for a cluster, how many tasks to submit).
    """

    jobs: int

    def run(self, work: Sequence[Job]) -> list[str]: ...


class LocalBackend:
    """A stdlib process pool (forkserver: workers start clean, not as copies of the caller)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, work: Sequence[Job]) -> list[str]:
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(self.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(fn, *args) for fn, args in work]
            return [str(f.result()) for f in futures]


class BackendUnavailable(Exception):
    """The back-end asked for cannot be used here (its package is missing, its scheduler
    cannot be reached); the message says what to do."""


@contextmanager
def open_backend(name: str, jobs: int, scheduler: str | None = None) -> Iterator[Backend]:
    """The back-end ``name`` for ``jobs`` shares, closed on exit: for ``dask`` without a
    ``scheduler`` address, a LocalCluster of ``jobs`` worker processes started for the run."""
    if name == "local":
        if scheduler is not None:
            raise BackendUnavailable("--scheduler needs --backend dask")
        yield LocalBackend(jobs)
        return
    if name != "dask":
        raise BackendUnavailable(f"unknown back-end {name!r}; one of {', '.join(BACKENDS)}")
    try:
        from writepath.explorer.dask_backend import DaskBackend
    except ImportError:
        raise BackendUnavailable(
            "--backend dask needs Dask distributed: install writepath[distributed]"
        ) from None
    with DaskBackend.open(jobs, scheduler) as backend:
        yield backend


@lru_cache(maxsize=8)
def _load(path: str) -> Scenario:
    return load_scenario(path)


def subtrees_job(path: str, design: str, bound: int, prefixes: list[list[int]], budget: int) -> str:
    """Explore the subtrees under ``prefixes``; the tally and completeness as JSON text."""
    scenario = _load(path)
    tally = Tally()
    complete = True
    for p in prefixes:
        t, done = explore_subtree(scenario, design, p, bound, max(budget - tally.schedules, 0))
        tally.merge(t)
        complete = complete and done
    return json.dumps({"tally": tally.to_json(), "complete": complete})


def random_job(
    path: str, design: str, seed: int, start: int, stop: int, depth: int, horizon: int
) -> str:
    """PCT schedules ``start .. stop - 1`` of ``seed``; the tally as JSON text."""
    tally = random_range(_load(path), design, seed, start, stop, depth, horizon)
    return json.dumps({"tally": tally.to_json(), "complete": True})


def _inline(scenario: Scenario, jobs: int, backend: Backend | None) -> bool:
    # A scenario without a file (built in memory) cannot be loaded by a worker.
    return scenario.path.startswith("<") or (backend is None and jobs <= 1)


def explore_bounded(
    scenario: Scenario,
    design: str,
    bound: int,
    jobs: int = 1,
    budget: int = MAX_SCHEDULES,
    backend: Backend | None = None,
) -> Search:
    """Every schedule with at most ``bound`` preemptions (up to ``budget`` schedules), on
    ``backend`` (default: a local pool of ``jobs`` processes; inline for one job)."""
    start = now()
    if _inline(scenario, jobs, backend):
        tally, complete = explore_subtree(scenario, design, [], bound, budget)
        return Search(scenario.name, design, bound, complete, tally, now() - start, "bounded")
    runner = backend or LocalBackend(jobs)
    shares_n = runner.jobs
    tally, pending = frontier(scenario, design, bound, shares_n * SUBTREES_PER_JOB)
    # Deal the subtrees round-robin: each share gets some early and some late subtrees.
    shares = [pending[k::shares_n] for k in range(shares_n)]
    per_job = max((budget - tally.schedules) // shares_n, 1)
    work: list[Job] = [
        (subtrees_job, (scenario.path, design, bound, share, per_job)) for share in shares if share
    ]
    complete = True
    for text in runner.run(work):
        data = json.loads(text)
        tally.merge(Tally.from_json(data["tally"]))
        complete = complete and data["complete"]
    return Search(scenario.name, design, bound, complete, tally, now() - start, "bounded")


def explore_random(
    scenario: Scenario,
    design: str,
    count: int,
    seed: int,
    jobs: int = 1,
    depth: int = DEFAULT_PCT_DEPTH,
    backend: Backend | None = None,
) -> Search:
    """``count`` PCT schedules of ``seed``: schedule i is the same whoever runs it."""
    start = now()
    horizon = horizon_of(scenario, design)
    if _inline(scenario, jobs, backend):
        tally = random_range(scenario, design, seed, 0, count, depth, horizon)
        return Search(scenario.name, design, None, False, tally, now() - start, "random")
    runner = backend or LocalBackend(jobs)
    step = -(-count // runner.jobs)
    work: list[Job] = [
        (random_job, (scenario.path, design, seed, lo, min(lo + step, count), depth, horizon))
        for lo in range(0, count, step)
    ]
    tally = Tally()
    for text in runner.run(work):
        tally.merge(Tally.from_json(json.loads(text)["tally"]))
    return Search(scenario.name, design, None, False, tally, now() - start, "random")
