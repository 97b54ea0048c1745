"""Where the new design loses: write size x source state x design, priced under one profile.

Each point is one ``pwrite`` at offset 0 into a cached tmpfs file, from a source buffer in one
of the ``STATES``; the model runs it and the profile prices its events. Points run in worker
processes (stdlib ``ProcessPoolExecutor``), each a pure function of its arguments, gathered in
grid order: the result does not depend on the number of workers or on scheduling.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from writepath.cost.calibrate import DESIGNS
from writepath.cost.price import price, tally
from writepath.cost.profile import Profile
from writepath.kernel.constants import PAGE_SIZE
from writepath.run import run_scenario
from writepath.scenario import Scenario, parse_scenario

#: Source states of the sweep. "evicted" stands for swapped-out memory too: the model has no
#: swap, so a page of an uncached ext4 file (a read from storage) takes its place.
STATES = ("resident", "untouched-anon", "untouched-file", "partly-resident", "evicted")

#: 1 B to 1 MiB in powers of two.
DEFAULT_SIZES = tuple(1 << k for k in range(21))

#: The largest write a sweep may ask for: the model runs every page of it.
MAX_SIZE = 64 << 20

WINDOW_KEYS = ("uaccess_window",)
FAULT_KEYS = (
    "fault_minor",
    "fault_major",
    "fault_zero_page",
    "fault_refused",
    "fault_failed",
    "fault_in_call",
    "fault_in_touch",
    "failed_copy",
    "retry",
)


def sweep_scenario(state: str, size: int) -> Scenario:
    """One pwrite of ``size`` bytes from a buffer in ``state`` into a cached tmpfs file."""
    pages = max(1, -(-size // PAGE_SIZE))
    files: list[dict[str, Any]] = [
        {"name": "target", "fs": "tmpfs", "size": pages * PAGE_SIZE, "data": "pattern"}
    ]
    regions: list[dict[str, Any]]
    if state == "resident":
        regions = [
            {"name": "buf", "pages": pages, "kind": "anon", "touched": True, "data": "pattern:7"}
        ]
    elif state == "untouched-anon":
        regions = [{"name": "buf", "pages": pages, "kind": "anon"}]
    elif state == "untouched-file":
        files.append({"name": "src", "fs": "tmpfs", "size": pages * PAGE_SIZE, "data": "pattern:3"})
        regions = [{"name": "buf", "pages": pages, "kind": "file", "file": "src"}]
    elif state == "partly-resident":
        # The first half of the pages touched, the rest untouched: two adjacent regions
        # (regions lie back to back), one iov across both. A one-page buffer is untouched.
        head = pages // 2
        regions = []
        if head:
            regions.append(
                {"name": "buf", "pages": head, "kind": "anon", "touched": True, "data": "pattern:7"}
            )
        regions.append(
            {"name": "buf" if not head else "tail", "pages": pages - head, "kind": "anon"}
        )
    elif state == "evicted":
        files.append(
            {
                "name": "src",
                "fs": "ext4",
                "size": pages * PAGE_SIZE,
                "data": "pattern:3",
                "cached": False,
            }
        )
        regions = [{"name": "buf", "pages": pages, "kind": "file", "file": "src"}]
    else:
        raise ValueError(f"unknown source state {state!r} (known: {', '.join(STATES)})")
    doc = {
        "name": f"sweep-{state}-{size}",
        "file": files,
        "region": regions,
        "call": [{"op": "pwrite", "file": "target", "iov": [["buf", 0, size]], "pos": 0}],
    }
    return parse_scenario(doc, "<sweep>")


def sweep_point(args: tuple[str, int, str]) -> dict[str, float]:
    """The model's quantities of one point (profile-free, so a worker needs no profile)."""
    state, size, design = args
    result = run_scenario(sweep_scenario(state, size), design)
    if result.verdict != "ok" or not result.calls or result.calls[0].ret != size:
        raise RuntimeError(f"sweep point {state}/{size}/{design}: the write did not complete")
    return tally(result.events).total


@dataclass
class SweepResult:
    profile: str
    sizes: list[int]
    states: list[str]
    designs: list[str]
    points: dict[str, dict[str, Any]] = field(default_factory=dict)
    crossover: dict[str, dict[str, Any]] = field(default_factory=dict)
    break_even: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _progress(total: int) -> Callable[[int], None]:
    """A progress bar on stderr when stderr is a terminal (rich), nothing otherwise: stdout may
    be carrying the sweep's JSON."""
    if not sys.stderr.isatty():
        return lambda done: None
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:  # pragma: no cover - rich is a dependency
        return lambda done: None
    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("sweep", total=total)
    bar.start()

    def update(done: int) -> None:
        bar.update(task, completed=done)
        if done >= total:
            bar.stop()

    return update


def run_sweep(
    profile: Profile,
    sizes: Sequence[int] = DEFAULT_SIZES,
    states: Sequence[str] = STATES,
    workers: int = 1,
    chunksize: int = 4,
) -> SweepResult:
    for s in sizes:
        if not 1 <= s <= MAX_SIZE:
            raise ValueError(f"write size {s} outside 1..{MAX_SIZE}")
    for st in states:
        if st not in STATES:
            raise ValueError(f"unknown source state {st!r} (known: {', '.join(STATES)})")
    grid = [(st, s, d) for st in states for s in sizes for d in DESIGNS]
    update = _progress(len(grid))
    quantities: list[dict[str, float]] = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for q in pool.map(sweep_point, grid, chunksize=chunksize):
                quantities.append(q)
                update(len(quantities))
    else:
        for g in grid:
            quantities.append(sweep_point(g))
            update(len(quantities))
    result = SweepResult(profile.name, list(sizes), list(states), list(DESIGNS))
    for (st, s, d), q in zip(grid, quantities, strict=True):
        by_cost = price(q, profile)
        total = sum(by_cost.values())
        result.points[f"{st}/{s}/{d}"] = {
            "cycles": total,
            "window_share": sum(by_cost.get(k, 0.0) for k in WINDOW_KEYS) / total,
            "fault_share": sum(by_cost.get(k, 0.0) for k in FAULT_KEYS) / total,
            "quantities": {k: v for k, v in q.items() if v},
        }
    for st in states:
        wins = [
            s
            for s in sizes
            if result.points[f"{st}/{s}/v6.13"]["cycles"]
            < result.points[f"{st}/{s}/v6.14"]["cycles"]
        ]
        result.crossover[st] = {
            "v6.13_wins_at": _ranges(wins, list(sizes)),
            "sizes_v6.13_wins": wins,
        }
    result.break_even = _break_even(result, states, sizes)
    return result


def _ranges(wins: list[int], sizes: list[int]) -> str:
    """'1..4096, 65536' from the sizes where v6.13 wins, runs of neighbours joined."""
    if not wins:
        return ""
    runs: list[list[int]] = []
    for s in wins:
        if runs and sizes.index(s) == sizes.index(runs[-1][-1]) + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _break_even(result: SweepResult, states: Sequence[str], sizes: Sequence[int]) -> dict[str, Any]:
    """Per source state other than resident, at 4 KiB (or the nearest size swept): the share of
    calls finding their source in that state below which v6.14 still wins on average, gain on
    resident / (gain on resident + loss in that state). The top level keeps untouched-anon's
    (or the last state's) figure; ``by_state`` has every state's."""
    size = min(sizes, key=lambda s: abs(s - PAGE_SIZE))
    p = result.points
    by_state: dict[str, dict[str, float]] = {}
    if "resident" in states:
        gain = p[f"resident/{size}/v6.13"]["cycles"] - p[f"resident/{size}/v6.14"]["cycles"]
        for state in states:
            if state == "resident":
                continue
            loss = p[f"{state}/{size}/v6.14"]["cycles"] - p[f"{state}/{size}/v6.13"]["cycles"]
            fraction = gain / (gain + loss) if gain + loss > 0 and loss > 0 else float("nan")
            by_state[state] = {"fraction": fraction, "gain_cycles": gain, "loss_cycles": loss}
    state = "untouched-anon" if "untouched-anon" in states else states[-1]
    top = by_state.get(state, {"fraction": float("nan")})
    return {"state": state, "size": size, **top, "by_state": by_state}
