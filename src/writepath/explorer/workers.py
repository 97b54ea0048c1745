"""Spread a search over processes: stdlib ``concurrent.futures`` by default.

A worker gets the scenario's path (it loads and validates the file itself), the design and a
list of subtree prefixes or PCT schedule indexes; it returns its tally as JSON text. Nothing a
worker builds is pickled back. Since tallies fold order-independently and every subtree or index
is assigned whatever the number of workers, the result does not depend on ``jobs``.

Back-ends are picked by name and imported only when picked (``AVAILABLE_BACKENDS``); Ray and
Dask distributed are not provided yet.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache

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

AVAILABLE_BACKENDS = ("processes",)
#: Subtrees handed out per worker: enough to even out subtrees of very different sizes.
SUBTREES_PER_JOB = 8


@lru_cache(maxsize=8)
def _load(path: str) -> Scenario:
    return load_scenario(path)


def _subtrees_job(
    path: str, design: str, bound: int, prefixes: list[list[int]], budget: int
) -> str:
    scenario = _load(path)
    tally = Tally()
    complete = True
    for p in prefixes:
        t, done = explore_subtree(scenario, design, p, bound, max(budget - tally.schedules, 0))
        tally.merge(t)
        complete = complete and done
    return json.dumps({"tally": tally.to_json(), "complete": complete})


def _random_job(
    path: str, design: str, seed: int, start: int, stop: int, depth: int, horizon: int
) -> str:
    tally = random_range(_load(path), design, seed, start, stop, depth, horizon)
    return json.dumps({"tally": tally.to_json(), "complete": True})


def _pool(jobs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("forkserver"))


def explore_bounded(
    scenario: Scenario, design: str, bound: int, jobs: int = 1, budget: int = MAX_SCHEDULES
) -> Search:
    """Every schedule with at most ``bound`` preemptions (up to ``budget`` schedules)."""
    start = now()
    if jobs <= 1 or scenario.path.startswith("<"):
        tally, complete = explore_subtree(scenario, design, [], bound, budget)
        return Search(scenario.name, design, bound, complete, tally, now() - start, "bounded")
    tally, pending = frontier(scenario, design, bound, jobs * SUBTREES_PER_JOB)
    # Deal the subtrees round-robin: each worker gets a share of early and late subtrees.
    shares = [pending[k::jobs] for k in range(jobs)]
    complete = True
    per_job = max((budget - tally.schedules) // jobs, 1)
    with _pool(jobs) as pool:
        futures = [
            pool.submit(_subtrees_job, scenario.path, design, bound, share, per_job)
            for share in shares
            if share
        ]
        for f in futures:
            data = json.loads(f.result())
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
) -> Search:
    """``count`` PCT schedules of ``seed``: schedule i is the same whoever runs it."""
    start = now()
    horizon = horizon_of(scenario, design)
    if jobs <= 1 or scenario.path.startswith("<"):
        tally = random_range(scenario, design, seed, 0, count, depth, horizon)
        return Search(scenario.name, design, None, False, tally, now() - start, "random")
    step = -(-count // jobs)
    tally = Tally()
    with _pool(jobs) as pool:
        futures = [
            pool.submit(
                _random_job, scenario.path, design, seed, lo, min(lo + step, count), depth, horizon
            )
            for lo in range(0, count, step)
        ]
        for f in futures:
            tally.merge(Tally.from_json(json.loads(f.result())["tally"]))
    return Search(scenario.name, design, None, False, tally, now() - start, "random")
