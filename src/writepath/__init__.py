"""writepath: the Linux buffered write path, before and after 665575cff098, executable.

The public API::

    from writepath import load_scenario, run_scenario, DESIGNS
    result = run_scenario(load_scenario("scenarios/self-mmap-same-page.toml"), "v6.14")
    result.verdict, result.calls, result.files, result.counters
"""

from __future__ import annotations

from writepath.judge import consistency_violations, judge
from writepath.kernel.filemap import DESIGNS
from writepath.results import CallResult, FileState, RunResult
from writepath.run import run_scenario
from writepath.scenario import (
    Scenario,
    ScenarioError,
    load_catalogue,
    load_scenario,
    parse_scenario,
)
from writepath.sched import Verdict

__all__ = [
    "DESIGNS",
    "CallResult",
    "FileState",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Verdict",
    "consistency_violations",
    "judge",
    "load_catalogue",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
]
