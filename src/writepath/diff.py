"""The differential run: the model against the real kernel, scenario by scenario.

The model runs the design that matches this kernel's code for the filesystem: ``v6.14`` on a
kernel >= 6.14 (``v6.13`` before), for tmpfs, ext4 and ramfs; xfs runs iomap's own loop in every
design. The real kernel is the reference: a difference is a model bug until shown otherwise.
"""

from __future__ import annotations

import dataclasses
import platform
import re
from collections.abc import Callable

from writepath.mounts import FsPool
from writepath.oracle import run_oracle
from writepath.results import RunResult
from writepath.run import run_scenario
from writepath.scenario import Scenario, ScenarioError, parse_scenario

Table = Callable[[str, list[str], list[list[str]]], None]


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


def diff_one(scenario: Scenario, pool: FsPool, design: str) -> tuple[str, str]:
    """(status, detail): status is agree, differ, skip or error."""
    kernel = run_oracle(scenario, pool=pool)
    if kernel.verdict == "skip":
        return "skip", kernel.evidence
    if kernel.verdict not in ("ok", "stale-data"):
        return "differ", f"kernel {kernel.verdict}: {kernel.evidence}"
    model = run_scenario(scenario, design, keep_events=False)
    d = first_difference(model, kernel)
    return ("agree", "") if d is None else ("differ", d)


def run_diff(scenarios: list[Scenario], fss: list[str] | None, table: Table) -> int:
    design = design_for_running_kernel()
    rows: list[list[str]] = []
    counts = {"agree": 0, "differ": 0, "skip": 0}
    with FsPool() as pool:
        for s in scenarios:
            targets: list[tuple[str, Scenario | None, str]] = []
            if fss:
                for fs in fss:
                    try:
                        targets.append((fs, retarget(s, fs), ""))
                    except ScenarioError as e:
                        targets.append((fs, None, e.reason))
            else:
                targets.append(("/".join(sorted({f.fs for f in s.files})), s, ""))
            for fs, scen, why in targets:
                if scen is None:
                    status, detail = "skip", why
                else:
                    status, detail = diff_one(scen, pool, design)
                counts[status] += 1
                rows.append([s.name, fs, status, detail])
    table(
        f"model ({design}) against kernel {platform.release()}",
        ["scenario", "fs", "result", "detail"],
        rows,
    )
    print(f"{counts['agree']} agree, {counts['differ']} differ, {counts['skip']} skipped")
    return 1 if counts["differ"] else 0
