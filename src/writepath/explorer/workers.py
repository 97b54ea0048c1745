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

import hashlib
import json
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Protocol

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
            try:
                return [str(f.result()) for f in futures]
            except Exception as e:
                raise WorkerFailed(f"a worker failed: {type(e).__name__}: {e}") from None


class BackendUnavailable(Exception):
    """The back-end asked for cannot be used here (its package is missing, its scheduler
    cannot be reached); the message says what to do."""


class WorkerFailed(BackendUnavailable):
    """A job failed on its worker or answered something that is not a tally (a worker that
    saw another file at the scenario's path, lacks writepath, or ran out of memory)."""


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


def file_digest(path: str) -> str:
    """The sha256 of the scenario file a search was started from: a worker refuses a file
    with other content at that path (a remote worker's copy, or a file changed meanwhile)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@lru_cache(maxsize=8)
def _load(path: str, digest: str) -> Scenario:
    if file_digest(path) != digest:
        raise ValueError(f"{path} on this worker is not the file the search was started from")
    return load_scenario(path)


def _tally_of(text: str) -> tuple[Tally, bool]:
    """A worker's answer, checked to have the shape a tally has before it is merged."""

    def bad(why: str) -> WorkerFailed:
        return WorkerFailed(f"a worker's answer is malformed: {why}")

    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("complete"), bool):
        raise bad("no completeness flag")
    t = data.get("tally")
    if not isinstance(t, dict) or set(t) != {"schedules", "outcomes", "violations"}:
        raise bad("no tally")
    if not _is_count(t["schedules"]):
        raise bad("schedules is not a count")
    tables = (
        ("outcomes", ("count", "_best", "verdict", "calls", "files")),
        ("violations", ("_best", "property", "detail")),
    )
    for table, needed in tables:
        entries = t[table]
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and all(k in e for k in needed) for e in entries.values()
        ):
            raise bad(f"{table} are not records")
        for e in entries.values():
            if "count" in needed and not _is_count(e["count"]):
                raise bad("an outcome's count is not a count")
            if not _is_schedule_record(e["_best"]):
                raise bad("a record has no schedule")
    return Tally.from_json(t), data["complete"]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_schedule_record(best: object) -> bool:
    # What schedule_order() and the report read of the record kept for an outcome.
    return (
        isinstance(best, dict)
        and _is_count(best.get("preemptions"))
        and _is_count(best.get("switches"))
        and isinstance(best.get("choices"), list)
        and all(_is_count(c) for c in best["choices"])
        and isinstance(best.get("schedule"), str)
    )


def subtrees_job(
    path: str, digest: str, design: str, bound: int, prefixes: list[list[int]], budget: int
) -> str:
    """Explore the subtrees under ``prefixes``; the tally and completeness as JSON text."""
    scenario = _load(path, digest)
    tally = Tally()
    complete = True
    for p in prefixes:
        t, done = explore_subtree(scenario, design, p, bound, max(budget - tally.schedules, 0))
        tally.merge(t)
        complete = complete and done
    return json.dumps({"tally": tally.to_json(), "complete": complete})


def random_job(
    path: str,
    digest: str,
    design: str,
    seed: int,
    start: int,
    stop: int,
    depth: int,
    horizon: int,
) -> str:
    """PCT schedules ``start .. stop - 1`` of ``seed``; the tally as JSON text."""
    tally = random_range(_load(path, digest), design, seed, start, stop, depth, horizon)
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
    digest = file_digest(scenario.path)
    work: list[Job] = [
        (subtrees_job, (scenario.path, digest, design, bound, share, per_job))
        for share in shares
        if share
    ]
    complete = True
    for text in runner.run(work):
        part, done = _tally_of(text)
        tally.merge(part)
        complete = complete and done
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
    digest = file_digest(scenario.path)
    work: list[Job] = [
        (
            random_job,
            (scenario.path, digest, design, seed, lo, min(lo + step, count), depth, horizon),
        )
        for lo in range(0, count, step)
    ]
    tally = Tally()
    for text in runner.run(work):
        tally.merge(_tally_of(text)[0])
    return Search(scenario.name, design, None, False, tally, now() - start, "random")
