"""From boot records to the lkp-style table and the JSON report (compute, then render)."""

from __future__ import annotations

import dataclasses
import importlib
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from writepath.lab.parse import BootRecord
from writepath.lab.workloads import DEFAULT_WORKLOADS, Workload

#: Stated until predictions are attached (``attach_predictions``): null, not a made-up number.
NO_PREDICTION = "predicted_change_pct is null: no cost-model prediction was attached"
#: The cost model's name for each loop of bench.c (writepath.cost workloads).
COST_WORKLOAD = {
    "pwrite1": "pwrite1",
    "write1": "write1",
    "writeseek1": "writeseek1",
    "fsbuffer-w": "fsbuffer-w",
}
#: The write size each cost-model workload is written for (will-it-scale 4 KiB, unixbench 256).
COST_WORKLOAD_SIZE = {"pwrite1": 4096, "write1": 4096, "writeseek1": 4096, "fsbuffer-w": 256}

#: ``predicted_path_length_change(workload, profile=None) -> float``: the change in percent for
#: a cost-model workload, on the filesystem a ``.FS`` suffix names (``pwrite1.ramfs``).
Predictor = Callable[[str], float]
#: Under TCG the guest's clock measures the emulator, not the kernel; under -icount it is a
#: virtual clock that advances one ns per instruction, so it restates the instruction count.
TCG_WALL_CLOCK = (
    "wall-clock ns/op under TCG is the emulator's clock (under -icount one ns per guest "
    "instruction): it restates path length and is noise as a speed, not a gain"
)
#: What the two instruction counts mean.
COUNTS = (
    "insns count a rep-prefixed string instruction once, as hardware retires it; passes count "
    "each of its passes, as TCG executes it (a 4 KiB rep movsb copy is 4096 passes)"
)


@dataclass(frozen=True)
class BootValue:
    """One workload in one boot: its round with the fewest kernel instructions."""

    insns_per_op: float
    passes_per_op: float
    wall_ns_per_op: float


@dataclass(frozen=True)
class Row:
    workload: str
    base_insns_per_op: float
    patched_insns_per_op: float
    change_pct: float
    stddev_pct: float
    predicted_change_pct: float | None
    #: change_pct - predicted_change_pct, in percentage points (null without a prediction).
    predicted_delta_pp: float | None
    #: The largest max-min difference of insns/op between boots of one kernel.
    spread_insns_per_op: float
    base_boots: int
    patched_boots: int
    #: The same with every pass of a rep-prefixed instruction counted (TCG's own count).
    base_passes_per_op: float
    patched_passes_per_op: float
    passes_change_pct: float
    #: Guest wall-clock per op; under TCG only a record of the emulator's speed.
    base_wall_ns_per_op: float
    patched_wall_ns_per_op: float


@dataclass
class LabReport:
    kernel: str
    accel: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Why the lab uses ``accel`` (what /dev/kvm is, what a KVM probe boot showed).
    accel_reason: str = ""
    #: What /dev/kvm is: "hardware", "pvm" or "none" (qemu.AccelInfo.kvm).
    kvm: str = ""
    #: Throughput: measured only where KVM boots the lab's kernels; else why not.
    throughput: dict[str, Any] = field(default_factory=dict)
    #: The semantics replay (semantics.SemanticsReport.to_json()), when it ran.
    semantics: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kernel": self.kernel,
            "accel": self.accel,
            "accel_reason": self.accel_reason,
            "kvm": self.kvm,
            "rows": [asdict(r) for r in self.rows],
            "throughput": dict(self.throughput),
            "notes": list(self.notes),
        }
        if self.semantics is not None:
            out["semantics"] = self.semantics
        return out


def _rel_stddev_pct(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    return 100.0 * statistics.stdev(values) / statistics.fmean(values)


def _change_pct(base: float, patched: float) -> float:
    return 100.0 * (patched - base) / base


def per_boot(record: BootRecord) -> dict[str, BootValue]:
    """Per workload in one boot: the round with the fewest kernel instructions per op.

    A round that a timer tick (or any interrupt) fell in counts the handler too; the guest's
    only other activity is those interrupts, so the round with the fewest instructions is the
    write path alone. Under ``-icount`` where the ticks fall can differ between boots (idle time
    is skipped, not counted), which is why the mean of rounds would wander and the minimum not.
    Wall-clock is the mean over the rounds.
    """
    out: dict[str, BootValue] = {}
    walls: dict[str, list[float]] = {}
    for s in record.samples:
        name = s.workload.name
        walls.setdefault(name, []).append(s.wall_ns_per_op)
        best = out.get(name)
        if best is None or s.kernel_insns_per_op < best.insns_per_op:
            out[name] = BootValue(s.kernel_insns_per_op, s.kernel_passes_per_op, 0.0)
    return {
        name: BootValue(v.insns_per_op, v.passes_per_op, statistics.fmean(walls[name]))
        for name, v in out.items()
    }


def compute(
    kernel: str, accel: str, base: list[BootRecord], patched: list[BootRecord]
) -> LabReport:
    """Per workload: the mean over boots of each kernel, the change, the spread."""
    report = LabReport(kernel=kernel, accel=accel, notes=[COUNTS, NO_PREDICTION])
    if accel == "tcg":
        report.notes.append(TCG_WALL_CLOCK)
    order: list[str] = []
    per: dict[tuple[str, str], list[BootValue]] = {}
    for side, records in (("base", base), ("patched", patched)):
        for record in records:
            for name, value in per_boot(record).items():
                if name not in order:
                    order.append(name)
                per.setdefault((side, name), []).append(value)
    for name in order:
        b = per.get(("base", name), [])
        p = per.get(("patched", name), [])
        if not b or not p:
            report.notes.append(f"{name}: measured on one kernel only, left out")
            continue
        b_insns = [v.insns_per_op for v in b]
        p_insns = [v.insns_per_op for v in p]
        b_mean, p_mean = statistics.fmean(b_insns), statistics.fmean(p_insns)
        b_passes = statistics.fmean(v.passes_per_op for v in b)
        p_passes = statistics.fmean(v.passes_per_op for v in p)
        report.rows.append(
            Row(
                workload=name,
                base_insns_per_op=b_mean,
                patched_insns_per_op=p_mean,
                change_pct=_change_pct(b_mean, p_mean),
                stddev_pct=max(_rel_stddev_pct(b_insns), _rel_stddev_pct(p_insns)),
                predicted_change_pct=None,
                predicted_delta_pp=None,
                spread_insns_per_op=max(max(b_insns) - min(b_insns), max(p_insns) - min(p_insns)),
                base_boots=len(b),
                patched_boots=len(p),
                base_passes_per_op=b_passes,
                patched_passes_per_op=p_passes,
                passes_change_pct=_change_pct(b_passes, p_passes),
                base_wall_ns_per_op=statistics.fmean(v.wall_ns_per_op for v in b),
                patched_wall_ns_per_op=statistics.fmean(v.wall_ns_per_op for v in p),
            )
        )
    return report


def load_predictor() -> tuple[Predictor | None, str]:
    """The cost model's prediction function, or None and why it cannot be had."""
    name = "writepath.cost.report.predicted_path_length_change"
    try:
        # Looked up by name: the lab runs (and type-checks) with or without the cost model.
        module = importlib.import_module("writepath.cost.report")
        function = getattr(module, "predicted_path_length_change")
    except Exception as e:  # an absent or broken cost model must not end the lab
        return None, f"{name} unavailable ({type(e).__name__}: {e})"
    if not callable(function):
        return None, f"{name} is not a function"
    return cast(Predictor, function), ""


def _by_name(workloads: Sequence[Workload]) -> dict[str, Workload]:
    return {w.name: w for w in (*DEFAULT_WORKLOADS, *workloads)}


def attach_predictions(
    report: LabReport,
    workloads: Sequence[Workload] = (),
    predictor: Predictor | None = None,
    unavailable: str = "",
) -> None:
    """Fill predicted_change_pct (and the gap to the measurement) row by row, never raising.

    A row gets a prediction when its loop is a cost-model workload at the size that workload
    writes; otherwise, or when the predictor is missing or fails, "n/a" with one note saying why.
    """
    report.notes = [n for n in report.notes if n != NO_PREDICTION]
    known = _by_name(workloads)
    why: dict[str, None] = {}
    cache: dict[str, float | str] = {}
    for k, row in enumerate(report.rows):
        w = known.get(row.workload)
        if w is None or w.loop not in COST_WORKLOAD:
            why[f"{row.workload}: no cost-model workload for this loop"] = None
            continue
        name = COST_WORKLOAD[w.loop]
        if w.size != COST_WORKLOAD_SIZE[name]:
            why[
                f"{row.workload}: the cost model's {name} writes {COST_WORKLOAD_SIZE[name]} "
                f"bytes, this row {w.size}: no prediction"
            ] = None
            continue
        if predictor is None:
            why[f"predicted n/a: {unavailable or 'no cost model'}"] = None
            continue
        # The same loop on the row's filesystem: the cost model's name with a ".FS" suffix.
        name = f"{name}.{w.fs}"
        if name not in cache:
            try:
                value = predictor(name)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError(f"returned {type(value).__name__}, not a number")
                if not math.isfinite(value):
                    raise ValueError(f"returned {value}")
                cache[name] = float(value)
            except Exception as e:  # the cost model's failure is reported, not raised
                cache[name] = f"predicted n/a for {name}: {type(e).__name__}: {e}"[:300]
        got = cache[name]
        if isinstance(got, str):
            why[got] = None
            continue
        report.rows[k] = dataclasses.replace(
            row, predicted_change_pct=got, predicted_delta_pp=row.change_pct - got
        )
    report.notes.extend(why)


def render(report: LabReport) -> str:
    """The lkp compare layout: base, %change, ±stddev, patched, metric name last."""
    lines = [
        f"# writepath lab: guest kernel instructions per op, Linux {report.kernel}, "
        f"accel={report.accel}",
        f"{'base':>12} {'%change':>9} {'±%stddev':>9} {'patched':>12} {'spread':>7} "
        f"{'predicted':>9} {'Δpp':>6}  metric",
    ]
    for r in report.rows:
        predicted = "n/a" if r.predicted_change_pct is None else f"{r.predicted_change_pct:+.1f}%"
        delta = "" if r.predicted_delta_pp is None else f"{r.predicted_delta_pp:+.1f}"
        lines.append(
            f"{r.base_insns_per_op:12.1f} {r.change_pct:+8.1f}% {r.stddev_pct:8.2f}% "
            f"{r.patched_insns_per_op:12.1f} {r.spread_insns_per_op:7.1f} {predicted:>9} "
            f"{delta:>6}  {r.workload}.kernel_insns_per_op"
        )
    for r in report.rows:
        lines.append(
            f"{r.base_passes_per_op:12.1f} {r.passes_change_pct:+8.1f}% {'':9} "
            f"{r.patched_passes_per_op:12.1f} {'':7} {'':>9} {'':>6}  "
            f"{r.workload}.kernel_passes_per_op"
        )
    if report.rows:
        boots = f"{report.rows[0].base_boots}+{report.rows[0].patched_boots}"
        lines.append(f"# boots (base+patched, interleaved A/B): {boots}; spread = max-min insns/op")
        lines.append("# Δpp = measured %change minus the cost model's predicted %change")
    if report.accel == "tcg" and report.rows:
        lines.append("# wall-clock ns/op (TCG: emulator noise, not a gain):")
        for r in report.rows:
            lines.append(
                f"#   {r.workload}: base {r.base_wall_ns_per_op:.0f}  "
                f"patched {r.patched_wall_ns_per_op:.0f}"
            )
    lines.extend(f"# note: {n}" for n in report.notes)
    return "\n".join(lines)
