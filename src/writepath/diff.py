"""The differential run: the model against the real kernel, scenario by scenario.

The model runs the design that matches this kernel's code for the filesystem: ``v6.14`` on a
kernel >= 6.14 (``v6.13`` before), for tmpfs, ext4 and ramfs; xfs runs iomap's own loop in every
design. The real kernel is the reference: a difference is a model bug until shown otherwise.

``run_diff`` returns a ``report.DiffReport``; it prints nothing (the command line renders it).
"""

from __future__ import annotations

import dataclasses
import platform
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from writepath.mounts import FsPool
from writepath.report import DiffReport, DiffRow, ProgressHook, no_progress
from writepath.results import RunResult
from writepath.run import run_scenario
from writepath.scenario import FILESYSTEMS, Scenario, ScenarioError, parse_scenario
from writepath.tracecmp import first_trace_difference

#: Seconds the kernel run of one scenario may take before it is killed (``--timeout``).
DEFAULT_TIMEOUT = 10.0


#: The designs that name a kernel release, newest first: a kernel runs the newest one not
#: younger than itself (each loop in the form it had in that release, filemap.LOOP_FORMS).
_RELEASE_DESIGNS = (((6, 18), "v6.18"), ((6, 16), "v6.16"), ((6, 14), "v6.14"))


def design_for_running_kernel(release: str | None = None) -> str:
    """The design whose loops are the ones this kernel (or ``release``) runs."""
    m = re.match(r"(\d+)\.(\d+)", release or platform.release())
    if not m:
        return _RELEASE_DESIGNS[0][1]
    version = (int(m.group(1)), int(m.group(2)))
    return next((d for v, d in _RELEASE_DESIGNS if version >= v), "v6.13")


def retarget(scenario: Scenario, fs: str) -> Scenario:
    """The same scenario with every file on ``fs``; re-validated (tmpfs cannot hold an uncached
    file, for instance), so an impossible combination raises ScenarioError."""
    files = tuple(dataclasses.replace(f, fs=fs) for f in scenario.files)
    s = dataclasses.replace(scenario, files=files)
    doc = {
        "name": s.name,
        "file": [dataclasses.asdict(f) for f in files],
    }
    parse_scenario({**doc, "call": [{"op": "lseek"}]}, scenario.path)  # validates the files
    return s


def first_difference(model: RunResult, kernel: RunResult) -> str | None:
    """The first field in which two results differ, said plainly; None if they agree."""
    if model.verdict != kernel.verdict:
        return f"verdict: model {model.verdict}, kernel {kernel.verdict}"
    for k, (a, b) in enumerate(zip(model.calls, kernel.calls, strict=False)):
        if a.ret != b.ret or a.errno != b.errno:
            return f"call[{k}] {a.op}: model {a.as_expected()}, kernel {b.as_expected()}"
    for name, mf in model.files.items():
        kf = kernel.files[name]
        if mf.size != kf.size:
            return f"file {name} size: model {mf.size}, kernel {kf.size}"
        diff = mf.difference(kf)
        if diff is not None:
            return f"file {name} {diff} (model vs kernel)"
    return None


class DiffOutcome(NamedTuple):
    """What one scenario on one filesystem came to (one of report.DIFF_RESULTS), and why."""

    result: str
    reason: str


#: Runs a scenario on the real kernel: ``oracle(scenario, pool, timeout)`` (injectable, like the
#: oracle's own pool, so the comparison logic can be tested without a kernel).
Oracle = Callable[[Scenario, FsPool, float], RunResult]


def real_oracle(scenario: Scenario, pool: FsPool, timeout: float, trace: bool = False) -> RunResult:
    """This machine's kernel, through ``writepath.oracle`` (imported only when used)."""
    from writepath.oracle import run_oracle

    return run_oracle(scenario, pool=pool, timeout=timeout, trace=trace)


def diff_one(
    scenario: Scenario,
    pool: FsPool,
    design: str,
    oracle: Oracle | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    trace: bool = False,
) -> DiffOutcome:
    """Run ``scenario`` on the kernel, then in the model under ``design``, and compare.

    A kernel run that timed out, was killed or failed is ``error``, not ``differ``: it says
    nothing about the model, so the model is not run."""
    if oracle is not None:
        kernel = oracle(scenario, pool, timeout)
    elif trace:  # real_oracle is looked up here, so tests can replace it
        kernel = real_oracle(scenario, pool, timeout, trace=True)
    else:
        kernel = real_oracle(scenario, pool, timeout)
    if kernel.verdict == "skip":
        return DiffOutcome("skip", kernel.evidence)
    if kernel.verdict not in ("ok", "stale-data"):
        return DiffOutcome("error", f"kernel {kernel.verdict}: {kernel.evidence}")
    model = run_scenario(scenario, design, keep_events=False, traces=trace)
    d = first_difference(model, kernel)
    if d is not None:
        return DiffOutcome("differ", d)
    if trace:
        if any(c.trace is None for c in kernel.calls):
            why = kernel.extra.get("trace_unavailable", "no kernel trace")
            return DiffOutcome("agree", f"end state only: {why}")
        t = first_trace_difference(
            [c.trace or () for c in model.calls], [c.trace or () for c in kernel.calls]
        )
        if t is not None:
            return DiffOutcome("trace-differs", t)
    return DiffOutcome("agree", "")


def run_diff(
    scenarios: Sequence[Scenario],
    fss: Sequence[str] | None = None,
    *,
    design: str | None = None,
    oracle: Oracle | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: ProgressHook = no_progress,
    pool: FsPool | None = None,
    trace: bool = False,
) -> DiffReport:
    """Every scenario against the kernel: on each filesystem of ``fss`` (each scenario retargeted
    there; a combination that cannot exist is a skip with the reason), or where its files say
    when ``fss`` is None. ``design`` defaults to the one matching the running kernel; ``oracle``
    to ``real_oracle``."""
    unknown = [fs for fs in fss or () if fs not in FILESYSTEMS]
    if unknown:
        raise ValueError(
            f"unknown filesystem {', '.join(unknown)} (known: {', '.join(FILESYSTEMS)})"
        )
    design = design or design_for_running_kernel()
    plan: list[tuple[Scenario, str, Scenario | None, str]] = []
    for s in scenarios:
        if fss:
            for fs in fss:
                try:
                    plan.append((s, fs, retarget(s, fs), ""))
                except ScenarioError as e:
                    plan.append((s, fs, None, e.reason))
        else:
            plan.append((s, "/".join(sorted({f.fs for f in s.files})), s, ""))
    rows: list[DiffRow] = []
    with pool if pool is not None else FsPool() as active:
        for k, (s, fs, target, why) in enumerate(plan):
            progress(k, len(plan), f"{s.name} [{fs}]")
            if target is None:
                outcome = DiffOutcome("skip", why)
            else:
                outcome = diff_one(target, active, design, oracle, timeout, trace)
            rows.append(DiffRow(s.name, fs, outcome.result, outcome.reason))
    progress(len(plan), len(plan), "")
    return DiffReport(design, platform.release(), tuple(rows))
