"""``writepath explore``: search the interleavings of a multi-task scenario.

Wiring (cli.py): ``from writepath.explorer import cli as explore_cli``;
``explore_cli.add_parser(subparsers)`` where the other commands are added, and dispatch
``args.command == "explore"`` to ``explore_cli.main(args)``. Exit codes: 0 every explored
schedule satisfied every property, 1 a property was violated, 2 an error (a bad scenario, a bad
schedule, a schedule that diverges on replay).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from writepath.explorer.choices import ReplayDivergence, ScheduleError
from writepath.explorer.engine import DEFAULT_PCT_DEPTH, MAX_SCHEDULES, Search, replay
from writepath.explorer.workers import BackendUnavailable
from writepath.kernel.filemap import DESIGNS
from writepath.scenario import (
    Scenario,
    ScenarioError,
    default_catalogue,
    find_scenario,
    load_scenario,
)

#: Where the catalogue's race scenarios live: beside the single-task catalogue, not in it, so
#: that commands that run every catalogue scenario on the real kernel (check, diff) skip them.
RACE_FOLDER = "race"
DEFAULT_DESIGNS = ("v6.13", "v6.14")


def race_catalogue() -> Path:
    return default_catalogue() / RACE_FOLDER


def find_race_scenario(arg: str) -> Path:
    try:
        return find_scenario(arg)
    except ScenarioError:
        for candidate in (race_catalogue() / arg, race_catalogue() / f"{arg}.toml"):
            if "/" not in arg and candidate.is_file():
                return candidate
        raise


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _positive(text: str) -> int:
    value = _nonneg(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "explore",
        help="explore the interleavings of a multi-task scenario",
        description="Bounded-exhaustive (at most K preemptions) or PCT random search of a "
        "scenario's schedules; every schedule is judged (deadlock, livelock, LTP writev07 "
        "integrity, EFAULT only if nothing was copied, page cache consistency).",
    )
    p.add_argument("scenario", nargs="?", help="scenario file or catalogue name")
    p.add_argument("--design", action="append", choices=list(DESIGNS), help="design (repeatable)")
    p.add_argument("--preemptions", type=_nonneg, default=2, metavar="K")
    p.add_argument("--random", type=_positive, metavar="N", help="N PCT schedules instead")
    p.add_argument("--seed", type=_nonneg, default=0, metavar="S")
    p.add_argument("--jobs", type=_positive, default=1, metavar="J")
    p.add_argument(
        "--backend",
        choices=["local", "dask"],
        default="local",
        help="where the jobs run: a local process pool (default) or Dask distributed",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="a running Dask scheduler (default with --backend dask: a LocalCluster of J workers)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--replay", metavar="SCHEDULE", help="run exactly this schedule, with trace")
    p.add_argument("--bench", action="store_true", help="time the catalogue race scenarios at K=2")
    p.set_defaults(func=main)
    return p


def _searches(s: Scenario, designs: list[str], args: argparse.Namespace) -> list[Search]:
    from writepath.explorer.workers import open_backend

    backend_name = getattr(args, "backend", "local")
    scheduler = getattr(args, "scheduler", None)
    if backend_name == "local" and scheduler is None:
        backend = None  # explore_* pick the pool (or run inline for one job) themselves
        return [_search(s, d, args, backend) for d in designs]
    # One cluster for every design: starting Dask workers costs more than a small search.
    with open_backend(backend_name, args.jobs, scheduler) as backend:
        return [_search(s, d, args, backend) for d in designs]


def _search(s: Scenario, design: str, args: argparse.Namespace, backend: Any) -> Search:
    from writepath.explorer.workers import explore_bounded, explore_random

    if args.random:
        return explore_random(
            s, design, args.random, args.seed, args.jobs, DEFAULT_PCT_DEPTH, backend
        )
    return explore_bounded(s, design, args.preemptions, args.jobs, MAX_SCHEDULES, backend)


def _summary(search: Search) -> str:
    j = search.to_json()
    how = (
        f"exhausted at K={search.preemptions}"
        if search.complete
        else (f"{j['schedules']} sampled (PCT)" if search.mode == "random" else "NOT exhausted")
    )
    lines = [
        f"{search.scenario} [{search.design}]: {j['schedules']} schedules, {how}, "
        f"{len(j['outcomes'])} distinct outcomes, {j['seconds']:.2f} s"
    ]
    for o in j["outcomes"]:
        rets = "; ".join(
            f"{task}: " + ", ".join(f"{c['op']}={c['errno'] or c['ret']}" for c in calls)
            for task, calls in o["calls"].items()
        )
        lines.append(f"  {o['count']:>6} × {o['verdict']:<10} {rets}   schedule {o['schedule']}")
    for v in j["violations"]:
        lines.append(f"  VIOLATION {v['property']}: {v['detail']}")
        lines.append(
            f"    replay: writepath explore {search.scenario} --design {search.design} "
            f"--replay '{v['schedule']}'"
        )
    return "\n".join(lines)


def _bench(args: argparse.Namespace) -> int:
    from writepath.explorer.bench import bench

    report = bench(jobs=args.jobs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for row in report["scenarios"]:
            print(
                f"{row['scenario']:<52} {row['design']:<14} {row['schedules']:>6} schedules "
                f"{row['seconds']:>7.2f} s {row['schedules_per_second']:>8.0f}/s"
                f"{'' if row['complete'] else '  NOT exhausted'}"
            )
        print(f"total {report['schedules']} schedules in {report['seconds']:.2f} s")
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        if args.bench:
            return _bench(args)
        if not args.scenario:
            raise ScenarioError("explore", "-", "a scenario is required (or --bench)")
        s = load_scenario(find_race_scenario(args.scenario))
        designs = args.design or list(DEFAULT_DESIGNS)
        if args.replay is not None:
            return _replay(s, designs, args)
        searches = _searches(s, designs, args)
    except (ScenarioError, ScheduleError, ReplayDivergence, BackendUnavailable) as e:
        print(f"writepath explore: {e}", file=sys.stderr)
        return 2
    if args.json:
        data = [x.to_json() for x in searches]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        print("\n".join(_summary(x) for x in searches))
    return 1 if any(x.tally.violations for x in searches) else 0


def _replay(s: Scenario, designs: list[str], args: argparse.Namespace) -> int:
    violated = False
    for d in designs:
        r = replay(s, d, args.replay)
        rec = r.record
        violated = violated or bool(rec["violations"])
        if args.json:
            print(
                json.dumps(
                    {k: rec[k] for k in ("verdict", "calls", "files", "violations", "schedule")},
                    indent=2,
                )
            )
            continue
        print(f"{s.name} [{d}] schedule {rec['schedule']}: {rec['verdict']}")
        print(render_events(r.result.events, {t.pid: n for n, t in _pids(s).items()}))
        for prop, detail in rec["violations"]:
            print(f"VIOLATION {prop}: {detail}")
    return 1 if violated else 0


def _pids(s: Scenario) -> dict[str, Any]:
    """Task name -> an object with its pid (pids follow ``Scenario.tasks``)."""

    class _P:
        def __init__(self, pid: int) -> None:
            self.pid = pid

    return {name: _P(k + 1) for k, name in enumerate(s.tasks)}


def render_events(events: list[Any], names: dict[int, str]) -> str:
    """The replayed run's event log, one line per event, each under its task's name."""
    lines = []
    depth: dict[int, int] = {}
    for kind, pid, a, b in events:
        who = names.get(pid, str(pid))
        d = depth.get(pid, 0)
        if kind == "enter":
            lines.append(f"{who:>10} | {'  ' * d}{a}({b}) {{")
            depth[pid] = d + 1
        elif kind == "exit":
            depth[pid] = max(d - 1, 0)
            lines.append(f"{who:>10} | {'  ' * depth[pid]}}} {a} = {b}")
        else:
            lines.append(f"{who:>10} | {'  ' * d}{kind} {a} {b}")
    return "\n".join(lines)
