"""Compute, then render: the results of ``bench`` as plain JSON-ready dicts.

``workload_tallies`` runs each workload once per design in the model (tallies do not depend on
the profile). ``bench_report`` and ``zeroday_report`` return a full report (everything the table
shows); ``issue_json`` cuts it to the exact shape issue 9 asks of ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from writepath.cost.calibrate import DESIGNS, Tallies, all_rows, calibrate, predict, zeroday
from writepath.cost.price import Tally, tally
from writepath.cost.profile import Profile
from writepath.cost.workload import Workload
from writepath.run import run_scenario


def workload_tallies(workloads: Iterable[Workload]) -> dict[tuple[str, str], Tally]:
    out: dict[tuple[str, str], Tally] = {}
    for w in workloads:
        for d in DESIGNS:
            result = run_scenario(w.scenario, d)
            if result.verdict != "ok":
                raise RuntimeError(f"workload {w.name} did not run to the end under {d}")
            out[(w.name, d)] = tally(result.events).scaled(1 / w.ops_per_period)
    return out


def _row_dict(
    workload: Workload, profile: str, pred: Any, measured: Any | None, fit: Any
) -> dict[str, Any]:
    return {
        "workload": workload.name,
        "metric": f"{workload.name}.{workload.metric.split('.', 1)[-1]}",
        "profile": profile,
        "designs": {
            d: {"ops_per_s": pred.ops_per_s[d], "cycles_per_op": pred.cycles_per_op[d]}
            for d in DESIGNS
        },
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
    fits = calibrate(profiles, all_rows(workloads), tallies)
    fit = fits[profile_name]
    pred = predict(workload, fit.profile, tallies)
    row = next((m for m in workload.measurements if m.profile == profile_name), None)
    d = _row_dict(workload, profile_name, pred, row, fit)
    d["measured_change_pct"] = None if row is None else row.change_pct
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
    for r in rows:
        if r.get("measured_change_pct") is None:
            r.pop("measured_change_pct", None)
    return rows if report["kind"] == "zeroday" else rows[0]
