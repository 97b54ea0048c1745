"""Compute, then render: the results of ``bench`` as plain JSON-ready dicts.

``workload_tallies`` runs each workload once per design in the model (tallies do not depend on
the profile); a workload of several tasks runs them in lockstep (``Lockstep``). ``bench_report``
and ``zeroday_report`` return a full report (everything the table shows); ``issue_json`` cuts it
to the exact shape issue 9 asks of ``--json``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from writepath.cost.calibrate import (
    DESIGNS,
    Prediction,
    Tallies,
    all_rows,
    base_cycles,
    calibrate,
    predict,
    zeroday,
)
from writepath.cost.price import Tally, tally, tally_tasks
from writepath.cost.profile import Profile, load_profiles
from writepath.cost.workload import Workload, WorkloadError, find_workload, load_workloads
from writepath.results import RunResult
from writepath.run import release_machine, run_scenario, run_tasks
from writepath.scenario import FILESYSTEMS
from writepath.sched import Runnable


class Lockstep:
    """A schedule for tasks that each have a CPU of their own: at every scheduling point the
    running task gives way to the next runnable one, so the tasks advance one point each in
    turn, and one that reaches ``inode_lock`` while another holds i_rwsem waits for it, as on
    two CPUs running the loop at once. (The model has no clock: lockstep is the assumption
    that the tasks run at the same speed.)"""

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int:
        return 1 if preemption and len(alternatives) > 1 else 0


def run_workload(workload: Workload, design: str) -> RunResult:
    """One period of ``workload`` under ``design``, with its event log; several tasks run in
    ``Lockstep``."""
    if workload.tasks == 1:
        return run_scenario(workload.scenario, design)
    run = run_tasks(workload.scenario, design, Lockstep(), keep_events=True)
    release_machine(run.machine)
    return run.result


def workload_tallies(workloads: Iterable[Workload]) -> dict[tuple[str, str], Tally]:
    """Per design, what one operation of one task pays: the period's tally over its tasks x
    ``ops_per_period``."""
    out: dict[tuple[str, str], Tally] = {}
    for w in workloads:
        for d in DESIGNS:
            result = run_workload(w, d)
            if result.verdict != "ok":
                raise WorkloadError(
                    w.path, "scenario", f"did not run to the end under {d} ({result.verdict})"
                )
            t = tally_tasks(result.events) if w.tasks > 1 else tally(result.events)
            out[(w.name, d)] = t.scaled(1 / (w.ops_per_period * w.tasks))
    return out


def _design_dict(pred: Prediction, d: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ops_per_s": pred.ops_per_s[d], "cycles_per_op": pred.cycles_per_op[d]}
    if pred.tasks > 1:
        # Several tasks on one inode: the rate is bounded by the i_rwsem section (calibrate).
        out["uncontended_ops_per_s"] = pred.uncontended_ops_per_s[d]
        out["i_rwsem_section_cycles_per_op"] = pred.critical_cycles_per_op[d]
        out["serialized_ops_per_s"] = pred.serialized_ops_per_s[d]
        out["bound"] = pred.bound(d)
    return out


def _row_dict(
    workload: Workload, profile: str, pred: Prediction, measured: Any | None, fit: Any
) -> dict[str, Any]:
    return {
        "workload": workload.name,
        "metric": f"{workload.name}.{workload.metric.split('.', 1)[-1]}",
        "profile": profile,
        "tasks": workload.tasks,
        "designs": {d: _design_dict(pred, d) for d in DESIGNS},
        "change_pct": pred.change_pct,
        "measured": None
        if measured is None
        else {
            "id": measured.id,
            "patch": measured.patch,
            "base": measured.base,
            "patched": measured.patched,
            "unit": measured.unit,
            "ops_per_unit": measured.ops_per_unit,
            "change_pct": measured.change_pct,
            "source": measured.source,
        },
        "calibration": {
            "path_scale": fit.path_scale,
            "path_scale_how": fit.path_scale_how,
            "uaccess_window_cycles": fit.window,
            "uaccess_window_how": fit.window_how,
        },
    }


def zeroday_report(
    profiles: Mapping[str, Profile], workloads: Mapping[str, Workload], tallies: Tallies
) -> dict[str, Any]:
    rows = []
    for r in zeroday(profiles, workloads, tallies):
        d = _row_dict(workloads[r.row.workload], r.row.profile, r.prediction, r.row, r.fit)
        d["measured_change_pct"] = r.row.change_pct
        d["held_out_change_pct"] = r.held_out.change_pct
        d["held_out_error_pp"] = r.held_out_error_pp
        d["held_out_strict_change_pct"] = r.held_out_strict.change_pct
        d["held_out_strict_error_pp"] = r.held_out_strict_error_pp
        d["held_out_calibration"] = {
            "path_scale": r.held_out_fit.path_scale,
            "path_scale_how": r.held_out_fit.path_scale_how,
            "uaccess_window_cycles": r.held_out_fit.window,
            "uaccess_window_how": r.held_out_fit.window_how,
        }
        rows.append(d)
    return {"kind": "zeroday", "rows": rows}


def bench_report(
    workload: Workload,
    profile_name: str,
    profiles: Mapping[str, Profile],
    workloads: Mapping[str, Workload],
    tallies: Tallies,
) -> dict[str, Any]:
    """One workload on one profile, calibrated with every 0day row; the row of this workload
    and profile, if the table has one, is set beside it."""
    rows = all_rows(workloads)
    fits = calibrate(profiles, rows, tallies)
    fit = fits[profile_name]
    row = next((m for m in workload.measurements if m.profile == profile_name), None)
    base = None if row is None else base_cycles(profiles[profile_name], row, rows)
    pred = predict(workload, fit.profile, tallies, base)
    d = _row_dict(workload, profile_name, pred, row, fit)
    d["measured_change_pct"] = None if row is None else row.change_pct
    if workload.tasks > 1:
        d["i_rwsem_waits_per_op"] = {
            des: tallies[(workload.name, des)].lock_waits for des in DESIGNS
        }
    d["breakdown"] = {
        des: {
            k: n
            * fit.profile.cost(k)
            * (0 if k == "uaccess_window" and not fit.profile.smap else 1)
            for k, n in tallies[(workload.name, des)].total.items()
            if n
        }
        for des in DESIGNS
    }
    return {"kind": "bench", "rows": [d]}


ISSUE_KEYS = ("workload", "profile", "designs", "change_pct", "measured_change_pct")


def issue_json(report: Mapping[str, Any]) -> list[dict[str, Any]] | dict[str, Any]:
    """The shape of issue 9: one object per row (a list for ``--0day``)."""
    keys = ISSUE_KEYS + (("held_out_error_pp",) if report["kind"] == "zeroday" else ())
    rows = [{k: r[k] for k in keys if k in r} for r in report["rows"]]
    for r, full in zip(rows, report["rows"], strict=True):
        if full.get("tasks", 1) > 1:
            # A shared-file workload: its designs carry the i_rwsem bound, and this says for
            # how many tasks it was computed.
            r["tasks"] = full["tasks"]
        if r.get("measured_change_pct") is None:
            r.pop("measured_change_pct", None)
    return rows if report["kind"] == "zeroday" else rows[0]


# --- path length (kernel instructions per operation) -------------------------------------------

#: The profile whose instruction counts and v6.13 path lengths are measured (the lab's guest
#: kernel on this machine); the default of ``predicted_path_length_change``.
PATH_LENGTH_PROFILE = "amd-epyc-this-machine"


@functools.lru_cache(maxsize=16)
def _path_tallies(
    workload_name: str, fs: str | None, directory: str | None
) -> tuple[Workload, Tally, Tally]:
    workload = find_workload(load_workloads(directory), workload_name)
    if fs is not None and fs != workload.scenario.files[0].fs:
        # The same loop with its target file on another filesystem (the lab runs both).
        files = (dataclasses.replace(workload.scenario.files[0], fs=fs),)
        scenario = dataclasses.replace(workload.scenario, files=files + workload.scenario.files[1:])
        workload = dataclasses.replace(workload, scenario=scenario)
    t = workload_tallies([workload])
    return workload, t[(workload.name, "v6.13")], t[(workload.name, "v6.14")]


def _split_fs(name: str) -> tuple[str, str | None]:
    """``pwrite1.ramfs`` -> (``pwrite1``, ``ramfs``); a name without a filesystem is kept."""
    head, _, tail = name.rpartition(".")
    return (head, tail) if head and tail in FILESYSTEMS else (name, None)


def predicted_path_length_change(workload: str, profile: str | None = None) -> float:
    """The cost model's change in kernel instructions per operation (%) from v6.13 to v6.14 for
    one workload's loop (``pwrite1``, ``write1``, ``writeseek1``, ``fsbuffer-w``), on the
    workload's own filesystem (tmpfs for will-it-scale, ramfs for fsbuffer-w), or on the one a
    ``.FS`` suffix names, as the lab's rows do (``pwrite1.ramfs``).

    The numerator is the model's: the events whose counts differ between the designs, each
    times its ``insns`` per unit from the profile (from the disassembly of the lab's base guest
    kernel). The denominator is the measured v6.13 path length of that loop on that filesystem
    (``path_length_WORKLOAD_FS`` in the profile's measurements; the lab's base kernel only). The
    approximation: instructions are the same x86 code on every profile, so a profile without its
    own counts or path lengths takes this machine's. Raises ValueError for an unknown workload or
    profile, where an event that differs has no instruction count anywhere, or where no v6.13
    path length is known for the loop.
    """
    profiles = load_profiles()
    own = profiles.get(profile or PATH_LENGTH_PROFILE)
    if own is None:
        raise ValueError(f"no profile named {profile!r} (known: {', '.join(profiles)})")
    measured = profiles[PATH_LENGTH_PROFILE]
    try:
        name, fs_asked = _split_fs(workload)
        w, q13, q14 = _path_tallies(name, fs_asked, None)
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
    fs = w.scenario.files[0].fs
    test = w.name.split(".", 1)[-1]
    key = f"path_length_{test}_{fs}"
    base = own.measurements.get(key) or measured.measurements.get(key)
    if not base:
        raise ValueError(f"no measured v6.13 path length {key} for workload {w.name}")
    saved = 0.0
    for unit in sorted(set(q13.total) | set(q14.total)):
        diff = q13.total.get(unit, 0.0) - q14.total.get(unit, 0.0)
        if not diff:
            continue
        insns = own.costs[unit].insns
        if insns is None:
            insns = measured.costs[unit].insns
        if insns is None:
            raise ValueError(f"{unit} differs between the designs but has no insns count")
        saved += diff * insns
    return -saved / base[0] * 100
