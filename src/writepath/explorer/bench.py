"""``writepath explore --bench``: schedules per second and the time to exhaust each catalogue
race scenario at K = 2, in each design its claims are about.

Wall-clock figures of this machine, one run each, no warm-up beyond Python's import: what was
not controlled is CPU frequency and other load.
"""

from __future__ import annotations

from typing import Any

from writepath.explorer.engine import now
from writepath.explorer.workers import explore_bounded
from writepath.scenario import load_catalogue

BENCH_BOUND = 2
BENCH_DESIGNS = ("v6.13", "v6.14")


def bench(jobs: int = 1) -> dict[str, Any]:
    from writepath.explorer.cli import race_catalogue

    rows: list[dict[str, Any]] = []
    start = now()
    for s in load_catalogue([race_catalogue()]):
        for design in BENCH_DESIGNS:
            search = explore_bounded(s, design, BENCH_BOUND, jobs)
            n = search.tally.schedules
            rows.append(
                {
                    "scenario": s.name,
                    "design": design,
                    "schedules": n,
                    "complete": search.complete,
                    "seconds": round(search.seconds, 4),
                    "schedules_per_second": round(n / search.seconds, 1) if search.seconds else 0,
                }
            )
    total = sum(r["schedules"] for r in rows)
    return {
        "bound": BENCH_BOUND,
        "jobs": jobs,
        "scenarios": rows,
        "schedules": total,
        "seconds": round(now() - start, 3),
    }
