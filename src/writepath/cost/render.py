"""Tables and plots, drawn only from the JSON a computation saved (lkp ``compare`` style).

A bench row reads as lkp prints a comparison: ``base  %change  patched  metric``, here once for
the model (v6.13 and v6.14 predicted) and once for the kernel test robot's measurement, with the
held-out error in percentage points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}".replace(",", "") if x >= 100 else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def lkp_table(report: Mapping[str, Any], design: str | None = None) -> str:
    """The bench or 0day report as lkp prints a comparison (v6.13 is the base, v6.14 the
    patched kernel); ``design`` adds a line per row with that design's figures alone."""
    lines = [
        "per thread, in the 0day row's unit (model: clock / cycles per op; ops/s where no row)",
        "",
        f"{'v6.13':>14}  {'%change':>8}  {'v6.14':>14}  {'held-out':>9}  metric / profile / source",
        f"{'-' * 14}  {'-' * 8}  {'-' * 14}  {'-' * 9}  {'-' * 40}",
    ]
    for r in report["rows"]:
        d = r["designs"]
        held = r.get("held_out_error_pp")
        m = r.get("measured")
        # Shown in the measurement's unit, so that the two lines compare.
        per_unit = 1.0 if m is None else m["ops_per_unit"]
        lines.append(
            f"{_num(d['v6.13']['ops_per_s'] / per_unit):>14}  {_pct(r['change_pct']):>8}  "
            f"{_num(d['v6.14']['ops_per_s'] / per_unit):>14}  "
            f"{'' if held is None else f'{held:+.1f} pp':>9}  "
            f"{r['metric']}  [{r['profile']}] predicted"
        )
        if m is not None:
            err = r["change_pct"] - m["change_pct"]
            lines.append(
                f"{_num(m['base']):>14}  {_pct(m['change_pct']):>8}  {_num(m['patched']):>14}  "
                f"{'':>9}  0day {m['id']} ({m['patch']}); error {err:+.1f} pp"
            )
        strict = r.get("held_out_strict_error_pp")
        if held is not None and strict is not None:
            lines.append(
                f"{'':>14}  {'':>8}  {'':>14}  {'':>9}  held out: {r['held_out_change_pct']:+.1f}%"
                f" ({held:+.1f} pp) with its own v6.13 rate as the base;"
                f" {r['held_out_strict_change_pct']:+.1f}% ({strict:+.1f} pp) strictly"
                " (its rate unused too)"
            )
        if design is not None:
            lines.append(
                f"{'':>14}  {'':>8}  {'':>14}  {'':>9}  {design}: "
                f"{d[design]['ops_per_s']:,.0f} ops/s, {d[design]['cycles_per_op']:.0f} cycles/op"
            )
        c = r["calibration"]
        c13, c14 = d["v6.13"]["cycles_per_op"], d["v6.14"]["cycles_per_op"]
        base = "the measured v6.13 rate" if m is not None and m.get("base") else "the model"
        if m is not None and not m.get("base") and r["measured_change_pct"] is not None:
            base = "the v6.13 rate of the same workload and profile"
        lines.append(
            f"{'':>14}  {'':>8}  {'':>14}  {'':>9}  cycles/op {c13:.0f} -> {c14:.0f} "
            f"(v6.13 from {base}; the model saves {c13 - c14:.0f}); window "
            f"{c['uaccess_window_cycles']:.1f} ({c['uaccess_window_how']}); path "
            f"x{c['path_scale']:.3f} ({c['path_scale_how']})"
        )
        if "bound" in d["v6.13"]:
            a, b = d["v6.13"], d["v6.14"]
            lines.append(
                f"{'':>14}  {'':>8}  {'':>14}  {'':>9}  {r['tasks']} tasks on one inode: "
                f"i_rwsem section {a['i_rwsem_section_cycles_per_op']:.0f} -> "
                f"{b['i_rwsem_section_cycles_per_op']:.0f} cycles/op allows "
                f"{_num(a['serialized_ops_per_s'])} -> {_num(b['serialized_ops_per_s'])} ops/s "
                f"per task; uncontended {_num(a['uncontended_ops_per_s'])} -> "
                f"{_num(b['uncontended_ops_per_s'])}; bound: {a['bound']} -> {b['bound']}"
            )
            if m is None:
                lines.append(f"{'':>14}  {'':>8}  {'':>14}  {'':>9}  no 0day measurement")
        lines.append("")
    if report.get("kind") == "zeroday":
        lines += _error_summary(report["rows"])
    return "\n".join(lines)


def _error_summary(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per 0day row: measured and predicted change, the error in sample, held out
    (the row's own v6.13 rate as the base) and held out strictly (its rate unused too)."""
    out = [
        f"{'0day row':<26} {'measured':>8} {'predicted':>9} {'error':>8} {'held-out':>8} "
        f"{'strict':>8}"
    ]
    for r in rows:
        out.append(
            f"{r['measured']['id']:<26} {r['measured_change_pct']:>+7.1f}% "
            f"{r['change_pct']:>+8.1f}% "
            f"{r['change_pct'] - r['measured_change_pct']:>+5.1f} pp "
            f"{r['held_out_error_pp']:>+5.1f} pp {r['held_out_strict_error_pp']:>+5.1f} pp"
        )
    return out


def profiles_table(profiles: Sequence[Mapping[str, Any]], verbose: bool = False) -> str:
    lines = []
    for p in profiles:
        lines.append(f"{p['name']}: {p['cpu']}")
        lines.append(f"    clock {p['clock']['value']} GHz  ({p['clock']['source']})")
        lines.append(f"    smap {str(p['smap']['value']).lower()}  ({p['smap']['source']})")
        for k, q in p["costs"].items():
            if verbose or not q["source"].startswith("prior from"):
                lines.append(f"    {k:<18} {q['value']:>10.4g} {q['unit']:<12} {q['source']}")
        lines.append("")
    return "\n".join(lines)


def sweep_table(result: Mapping[str, Any]) -> str:
    """Cost per call by write size, per source state, the designs side by side."""
    lines = [
        f"profile {result['profile']}: cycles per call; share in user-access windows / faults",
        "",
    ]
    for state in result["states"]:
        lines.append(f"source: {state}")
        lines.append(
            f"{'size':>8}  {'v6.13':>10}  {'%change':>8}  {'v6.14':>10}  "
            f"{'win13':>6} {'flt13':>6}  {'win14':>6} {'flt14':>6}"
        )
        for size in result["sizes"]:
            p = {d: result["points"][f"{state}/{size}/{d}"] for d in result["designs"]}
            a, b = p["v6.13"]["cycles"], p["v6.14"]["cycles"]
            shares = "  ".join(
                f"{p[d]['window_share'] * 100:>5.1f}% {p[d]['fault_share'] * 100:>5.1f}%"
                for d in ("v6.13", "v6.14")
            )
            lines.append(
                f"{size:>8}  {a:>10.0f}  {(b / a - 1) * 100:>+7.1f}%  {b:>10.0f}  {shares}"
            )
        cross = result["crossover"][state]
        lines.append(f"  v6.13 cheaper at: {cross['v6.13_wins_at'] or 'no size'}")
        lines.append("")
    be = result["break_even"]
    for state, figures in be.get("by_state", {}).items():
        lines.append(
            f"break-even ({state}): v6.14 is cheaper on average while fewer than "
            f"{figures['fraction'] * 100:.2f}% of {be['size']}-byte calls find their source "
            f"{state} (gain {figures['gain_cycles']:.0f} cycles on a resident source, "
            f"loss {figures['loss_cycles']:.0f} on this one)"
        )
    return "\n".join(lines)


def plot_sweep(result: Mapping[str, Any], out: str | Path) -> list[Path]:
    """PNG and SVG: one column per source state; on top, cycles per call against write size
    with the designs side by side, below, v6.14's change in cycles over v6.13 (above zero:
    v6.13 is cheaper, the crossover region shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = result["states"]
    sizes = result["sizes"]
    designs = result["designs"]
    fig, grid = plt.subplots(
        2,
        len(states),
        figsize=(3.6 * len(states), 6),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 2]},
    )
    for col, state in enumerate(states):
        top, bottom = grid[0][col], grid[1][col]
        cycles = {
            d: [result["points"][f"{state}/{s}/{d}"]["cycles"] for s in sizes] for d in designs
        }
        for design, style in zip(designs, ("o-", "s--"), strict=False):
            top.plot(sizes, cycles[design], style, label=design, markersize=3)
        top.set_xscale("log", base=2)
        top.set_yscale("log")
        top.set_title(state)
        top.grid(True, which="both", alpha=0.3)
        if "v6.13" in cycles and "v6.14" in cycles:
            change = [
                (b / a - 1) * 100 for a, b in zip(cycles["v6.13"], cycles["v6.14"], strict=True)
            ]
            bottom.plot(sizes, change, "d-", color="tab:red", markersize=3)
            bottom.axhline(0, color="black", linewidth=0.8)
            bottom.fill_between(
                sizes, 0, change, where=[c > 0 for c in change], color="tab:red", alpha=0.15
            )
        bottom.set_xlabel("write size (bytes)")
        bottom.grid(True, which="both", alpha=0.3)
    grid[0][0].set_ylabel(f"cycles per call ({result['profile']})")
    grid[1][0].set_ylabel("v6.14 vs v6.13 cycles (%)\n> 0: v6.13 wins")
    grid[0][0].legend()
    fig.tight_layout()
    base = Path(out)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths
