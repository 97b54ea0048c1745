"""Calibration and prediction against the kernel test robot's table (facts.md §2).

A profile's costs are its priors (``profiles/*.toml``); calibration changes two things, each
from measurements of v6.13 only, never from a measured gain:

1. ``uaccess_window`` on a profile with a measured cycle share of ``fault_in_iov_iter_readable``
   in a v6.13 run: the cycles the model puts inside that function must equal the share times the
   measured cycles per operation (clock / v6.13 rate of the same row). A profile without a share
   takes the mean window fitted on the other profiles of its vendor, else keeps its prior.
2. ``path_scale`` multiplies every cost except the prefault's own (``PREFAULT_COSTS``), fitted
   by least squares so that the model's v6.13 cycles per operation equal the measured ones (clock
   / v6.13 rate) over the profile's rows. A profile without a v6.13 rate takes the geometric
   mean scale of the other profiles of its vendor, else 1.

A prediction of a 0day row starts from that row's measured v6.13 cycles per operation (clock /
v6.13 rate; a row that gives no rate takes the v6.13 rate of another row of the same workload
on the same profile) and takes away the model's difference between the designs under the
calibrated profile: v6.14 = v6.13 measured - (model v6.13 - model v6.14). The rate is a v6.13
measurement, an input of the prediction like the clock; the model supplies only the change.
Where no v6.13 rate exists, both designs are the model's own cycles.

A workload of N > 1 tasks on one file (will-it-scale's shared-file tests) is bounded by its
i_rwsem: one task at a time runs the section between ``inode_lock`` and ``inode_unlock``, so the
N tasks together make at most clock / (that section's cycles per operation) operations per
second, and each at most 1/N of it. Its predicted rate per task is the lesser of the uncontended
rate (clock / cycles per operation) and that serialized rate, the section priced by the same
calibrated profile. The contended lock's own slow path (optimistic spinning, sleeping, the
wakeup) is not priced: the serialized rate is an upper bound, and so is the prediction.

The measured change and the patched rate are never read here. ``zeroday`` predicts every row
three ways: in sample (every row's v6.13 data in the calibration); held out (the calibration
repeated without the row, its rate and its shares: its window and its profile's path scale come
from the other rows; its own v6.13 rate stays the base of its prediction); and held out
strictly (as held out, and the base is the model's v6.13 cycles too, so nothing measured on the
row enters: for a profile with one row, its cycles per operation are then a transfer from the
other CPUs, which the strict error measures).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from writepath.cost.price import FAULT_IN, Tally, unit_cost
from writepath.cost.profile import PREFAULT_COSTS, Profile
from writepath.cost.workload import Measurement, Workload

DESIGNS = ("v6.13", "v6.14")

#: Tallies per operation, by (workload name, design).
Tallies = Mapping[tuple[str, str], Tally]


@dataclass(frozen=True)
class Fit:
    """What calibration did to one profile, and from which rows."""

    profile: Profile
    path_scale: float
    path_scale_from: tuple[str, ...]
    path_scale_how: str
    window: float
    window_how: str


def _cycles(q: Mapping[str, float], profile: Profile, scale: float, window: float) -> float:
    total = 0.0
    for k, n in q.items():
        if not n:
            continue
        if k == "uaccess_window":
            c = window if profile.smap else 0.0
        else:
            c = unit_cost(profile, k)
            if k not in PREFAULT_COSTS:
                c *= scale
        total += n * c
    return total


def measured_cycles_per_op(profile: Profile, row: Measurement) -> float | None:
    ops = row.base_ops_per_s
    return None if ops is None else profile.hz / ops


def _fit_window(profile: Profile, rows: Sequence[Measurement], tallies: Tallies) -> list[float]:
    fitted = []
    for row in rows:
        c_meas = measured_cycles_per_op(profile, row)
        if c_meas is None or not profile.smap:
            continue
        for share in row.shares:
            if share.function != FAULT_IN:
                continue
            inner = tallies[(row.workload, share.design)].fault_in
            n_window = inner.get("uaccess_window", 0.0)
            if not n_window:
                continue
            rest = _cycles({k: v for k, v in inner.items() if k != "uaccess_window"}, profile, 1, 0)
            fitted.append(max(0.0, (share.pct / 100 * c_meas - rest) / n_window))
    return fitted


def _fit_scale(
    profile: Profile, window: float, rows: Sequence[Measurement], tallies: Tallies
) -> tuple[float | None, tuple[str, ...]]:
    num = den = 0.0
    used = []
    for row in rows:
        c_meas = measured_cycles_per_op(profile, row)
        if c_meas is None:
            continue
        q = tallies[(row.workload, "v6.13")].total
        path = _cycles({k: v for k, v in q.items() if k not in PREFAULT_COSTS}, profile, 1, 0)
        prefault = _cycles({k: v for k, v in q.items() if k in PREFAULT_COSTS}, profile, 1, window)
        num += path * (c_meas - prefault)
        den += path * path
        used.append(row.id)
    if not den:
        return None, ()
    return max(num / den, 0.0), tuple(used)


def calibrate(
    profiles: Mapping[str, Profile], rows: Iterable[Measurement], tallies: Tallies
) -> dict[str, Fit]:
    """Fit every profile to the rows given (see the module docstring)."""
    rows = list(rows)
    by_profile = {name: [r for r in rows if r.profile == name] for name in profiles}
    windows: dict[str, tuple[float, str]] = {}
    for name, p in profiles.items():
        fitted = _fit_window(p, by_profile[name], tallies)
        if fitted:
            ids = ", ".join(r.id for r in by_profile[name] if r.shares)
            windows[name] = (sum(fitted) / len(fitted), f"fitted to the {FAULT_IN} share of {ids}")
    for name, p in profiles.items():
        if name in windows:
            continue
        donors = [
            n for n in windows if profiles[n].vendor == p.vendor and "fitted" in windows[n][1]
        ]
        if donors and p.smap:
            value = sum(windows[n][0] for n in donors) / len(donors)
            windows[name] = (value, f"transferred from {', '.join(donors)} (same vendor)")
        else:
            windows[name] = (p.cost("uaccess_window"), "prior of the profile")
    scales: dict[str, tuple[float, tuple[str, ...], str]] = {}
    for name, p in profiles.items():
        s, used = _fit_scale(p, windows[name][0], by_profile[name], tallies)
        if s is not None:
            scales[name] = (s, used, f"fitted to the v6.13 rate of {', '.join(used)}")
    for name, p in profiles.items():
        if name in scales:
            continue
        donors = [n for n in scales if profiles[n].vendor == p.vendor and n != name]
        if donors:
            g = math.exp(sum(math.log(max(scales[n][0], 1e-9)) for n in donors) / len(donors))
            scales[name] = (g, (), f"geometric mean of {', '.join(donors)} (same vendor)")
        else:
            scales[name] = (1.0, (), "1: no v6.13 rate on this profile or its vendor")
    fits = {}
    for name, p in profiles.items():
        s, used, how = scales[name]
        w, w_how = windows[name]
        changes = {
            "uaccess_window": replace(
                p.costs["uaccess_window"], value=w, source=f"calibrated: {w_how}"
            ),
        }
        for k, q in p.costs.items():
            if k not in PREFAULT_COSTS and s != 1.0:
                changes[k] = replace(
                    q, value=q.value * s, source=f"{q.source}; x path scale {s:.3f}"
                )
        fits[name] = Fit(p.with_costs(changes), s, used, how, w, w_how)
    return fits


@dataclass(frozen=True)
class Prediction:
    workload: str
    profile: str
    #: Per task, uncontended: what one operation costs the task that makes it.
    cycles_per_op: dict[str, float]
    #: Per task: the lesser of the uncontended and the serialized rate.
    ops_per_s: dict[str, float]
    #: Tasks running the loop at once; the two below are for tasks > 1 only (else empty).
    tasks: int = 1
    #: Cycles per operation spent holding i_rwsem (the serialized section).
    critical_cycles_per_op: dict[str, float] = field(default_factory=dict)
    #: The rate per task that i_rwsem allows: clock / (tasks x critical cycles per op).
    serialized_ops_per_s: dict[str, float] = field(default_factory=dict)
    #: clock / cycles per operation, before the bound.
    uncontended_ops_per_s: dict[str, float] = field(default_factory=dict)

    def bound(self, design: str) -> str:
        """What limits the rate: ``uncontended`` or ``i_rwsem``."""
        serial = self.serialized_ops_per_s.get(design)
        if serial is not None and serial < self.uncontended_ops_per_s[design]:
            return "i_rwsem"
        return "uncontended"

    @property
    def change_pct(self) -> float:
        """The change of v6.14 over v6.13 in operations per second, in per cent."""
        return (self.ops_per_s["v6.14"] / self.ops_per_s["v6.13"] - 1) * 100


def predict(
    workload: Workload, profile: Profile, tallies: Tallies, base_cycles: float | None = None
) -> Prediction:
    """Cycles and operations per second per design under an already calibrated profile; with
    ``base_cycles`` (a measured v6.13 cycles per operation) the model gives only the difference
    between the designs. A workload of several tasks gets per task the lesser of the
    uncontended rate and the rate its i_rwsem section allows them (module docstring)."""
    cyc = {}
    for d in DESIGNS:
        q = tallies[(workload.name, d)].total
        cyc[d] = sum(n * unit_cost(profile, k) for k, n in q.items() if n)
    if base_cycles is not None:
        saved = cyc["v6.13"] - cyc["v6.14"]
        cyc = {"v6.13": base_cycles, "v6.14": base_cycles - saved}
    ops = {d: profile.hz / c if c > 0 else math.inf for d, c in cyc.items()}
    if workload.tasks == 1:
        return Prediction(workload.name, profile.name, cyc, ops, uncontended_ops_per_s=dict(ops))
    critical = {
        d: sum(n * unit_cost(profile, k) for k, n in tallies[(workload.name, d)].critical.items())
        for d in DESIGNS
    }
    serial = {
        d: profile.hz / (workload.tasks * c) if c > 0 else math.inf for d, c in critical.items()
    }
    bounded = {d: min(ops[d], serial[d]) for d in DESIGNS}
    return Prediction(
        workload.name, profile.name, cyc, bounded, workload.tasks, critical, serial, dict(ops)
    )


@dataclass(frozen=True)
class RowResult:
    """One 0day row: the prediction with every row known, and the one with this row held out."""

    row: Measurement
    prediction: Prediction
    held_out: Prediction
    fit: Fit
    held_out_fit: Fit
    held_out_strict: Prediction

    @property
    def error_pp(self) -> float:
        return self.prediction.change_pct - self.row.change_pct

    @property
    def held_out_error_pp(self) -> float:
        return self.held_out.change_pct - self.row.change_pct

    @property
    def held_out_strict_error_pp(self) -> float:
        return self.held_out_strict.change_pct - self.row.change_pct


def all_rows(workloads: Mapping[str, Workload]) -> list[Measurement]:
    return [m for w in workloads.values() for m in w.measurements]


def base_cycles(profile: Profile, row: Measurement, rows: Sequence[Measurement]) -> float | None:
    """The measured v6.13 cycles per operation a prediction of ``row`` starts from: its own,
    else that of another row of the same workload on the same profile, else None."""
    for r in (row, *rows):
        if r.workload == row.workload and r.profile == row.profile:
            c = measured_cycles_per_op(profile, r)
            if c is not None:
                return c
    return None


def zeroday(
    profiles: Mapping[str, Profile], workloads: Mapping[str, Workload], tallies: Tallies
) -> list[RowResult]:
    """Predict every row of the 0day table, in sample and held out."""
    rows = all_rows(workloads)
    fits = calibrate(profiles, rows, tallies)
    out = []
    for row in rows:
        if row.profile not in profiles:
            raise KeyError(f"row {row.id}: no profile named {row.profile!r}")
        held = calibrate(profiles, [r for r in rows if r.id != row.id], tallies)
        w = workloads[row.workload]
        base = base_cycles(profiles[row.profile], row, rows)
        out.append(
            RowResult(
                row,
                predict(w, fits[row.profile].profile, tallies, base),
                predict(w, held[row.profile].profile, tallies, base),
                fits[row.profile],
                held[row.profile],
                predict(w, held[row.profile].profile, tallies),
            )
        )
    return out
