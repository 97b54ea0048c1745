"""Reports of the commands that run many scenarios: ``check``, ``compare`` and ``diff``.

The library computes a frozen report object; the command line renders it (text, a table or JSON)
and picks the exit code from it. Nothing here prints. A long loop reports how far it got through
an optional progress hook, so a caller can draw a progress bar without the library knowing how.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from writepath.judge import judge
from writepath.kernel.filemap import DESIGNS
from writepath.kernel.fs import WRITE_LOOP
from writepath.results import RunResult
from writepath.run import run_scenario
from writepath.scenario import Scenario

#: Designs that name a kernel release: a scenario's top-level [expect] applies to them. The broken
#: designs and `proposed` (a prediction) are judged only where a scenario states them.
CORRECT_DESIGNS = ("v6.13", "v6.14", "v6.16", "v6.18")

#: Called as ``hook(done, total, label)``: before each step with the steps finished so far and a
#: label for the step about to run, and once more with ``done == total`` at the end.
ProgressHook = Callable[[int, int, str], None]

#: Runs one scenario under one design in the model (injectable for tests).
ModelRunner = Callable[[Scenario, str], RunResult]


def run_model(scenario: Scenario, design: str) -> RunResult:
    """The model run the reports use: no event log, since they read only results and counters."""
    return run_scenario(scenario, design, keep_events=False)


def no_progress(done: int, total: int, label: str) -> None:
    """The default hook: report nothing."""


# -- check ------------------------------------------------------------------------------------


def judged_designs(scenario: Scenario, designs: Iterable[str] = DESIGNS) -> tuple[str, ...]:
    """The designs whose run of ``scenario`` is judged: the correct designs when the scenario has
    a top-level [expect], and every design it names in [expect.design.NAME]."""
    return tuple(
        d
        for d in designs
        if scenario.expectation(d) is not None
        and (d in CORRECT_DESIGNS or d in scenario.expect_by_design)
    )


@dataclass(frozen=True)
class CheckCase:
    """One scenario under one design, judged against its [expect]; no problems means it passed."""

    scenario: str
    design: str
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CheckReport:
    """Every judged case, and the scenarios that had nothing to judge (no applicable [expect])."""

    cases: tuple[CheckCase, ...]
    unjudged: tuple[str, ...]

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed

    @property
    def failures(self) -> tuple[CheckCase, ...]:
        return tuple(c for c in self.cases if not c.passed)


def check_scenarios(
    scenarios: Sequence[Scenario],
    runner: ModelRunner = run_model,
    progress: ProgressHook = no_progress,
) -> CheckReport:
    """Run every scenario under each design it is judged for and judge the result."""
    plan = [(s, d) for s in scenarios for d in judged_designs(s)]
    cases: list[CheckCase] = []
    for k, (s, d) in enumerate(plan):
        progress(k, len(plan), f"{s.name} [{d}]")
        cases.append(CheckCase(s.name, d, tuple(judge(s, runner(s, d)))))
    progress(len(plan), len(plan), "")
    unjudged = tuple(s.name for s in scenarios if not judged_designs(s))
    return CheckReport(tuple(cases), unjudged)


# -- compare ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareCell:
    """One scenario under one design: the verdict, each call's return (a count, an errno name,
    or None for a call that never returned) and the user-access windows opened."""

    design: str
    verdict: str
    rets: tuple[int | str | None, ...]
    user_access_windows: int


@dataclass(frozen=True)
class CompareRow:
    scenario: str
    cells: tuple[CompareCell, ...]
    #: The write loop(s) of the scenario's files (kernel.fs.WRITE_LOOP), e.g. iomap_write_iter.
    loops: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompareReport:
    designs: tuple[str, ...]
    rows: tuple[CompareRow, ...]


def compare_scenarios(
    scenarios: Sequence[Scenario],
    designs: Sequence[str] = tuple(DESIGNS),
    runner: ModelRunner = run_model,
    progress: ProgressHook = no_progress,
) -> CompareReport:
    """Run every scenario under every design."""
    total = len(scenarios) * len(designs)
    rows: list[CompareRow] = []
    done = 0
    for s in scenarios:
        cells: list[CompareCell] = []
        for d in designs:
            progress(done, total, f"{s.name} [{d}]")
            r = runner(s, d)
            windows = (r.counters or {}).get("user_access_windows", 0)
            cells.append(
                CompareCell(d, r.verdict, tuple(c.as_expected() for c in r.calls), windows)
            )
            done += 1
        loops = tuple(dict.fromkeys(WRITE_LOOP[f.fs] for f in s.files))
        rows.append(CompareRow(s.name, tuple(cells), loops))
    progress(total, total, "")
    return CompareReport(tuple(designs), tuple(rows))


# -- diff -------------------------------------------------------------------------------------

#: What one scenario on one filesystem can come to, model against kernel: both the same, not the
#: same, not comparable here (the kernel run could not be set up), or the kernel run failed
#: (timeout, signal, error), which says nothing about the model.
#: ``trace-differs``: the end state agrees but the tracepoints do not (``diff --trace`` only);
#: reported and counted, not failed, while the model does not yet take every path the kernel
#: takes (README "Tracepoints").
DIFF_RESULTS = ("agree", "trace-differs", "differ", "skip", "error")


@dataclass(frozen=True)
class DiffRow:
    scenario: str
    fs: str
    result: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "fs": self.fs,
            "result": self.result,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class DiffReport:
    """The model (``design``) against kernel ``kernel``, one row per scenario and filesystem."""

    design: str
    kernel: str
    rows: tuple[DiffRow, ...]

    @property
    def totals(self) -> dict[str, int]:
        counts = dict.fromkeys(DIFF_RESULTS, 0)
        for row in self.rows:
            counts[row.result] += 1
        return counts
