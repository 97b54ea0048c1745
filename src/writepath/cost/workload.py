"""Workloads: one TOML per benchmark loop, turned into a model scenario, with the kernel test
robot's measurements of that loop (``[[measured]]``) beside it.

``[scenario]`` uses the scenario-file format (README "Scenario files") plus two fields that keep
long loops short to write: ``repeat_calls`` (the ``call`` list is repeated that many times) and
``final_calls`` (appended once, e.g. the rewind of fsbuffer-w). One run of the scenario is one
*period* of the loop, ``ops_per_period`` operations of the benchmark's metric per task.

A scenario whose calls name several tasks (will-it-scale's shared-file tests: every task runs
the loop on one file) is run with the tasks interleaved (``report.workload_tallies``); its cost
per operation is per task: the period's events over tasks x ``ops_per_period``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from writepath.datadirs import data_dir
from writepath.scenario import (
    Scenario,
    ScenarioError,
    TomlFileError,
    parse_scenario,
    read_toml_file,
)

#: A period may not expand to more calls than this: the model runs every one of them.
MAX_PERIOD_CALLS = 10_000
#: A workload file is small: its scenario lists one period's loop body.
MAX_WORKLOAD_BYTES = 1 << 20


class WorkloadError(ValueError):
    """A workload that cannot be used: ``path: field: reason``."""

    def __init__(self, path: str, field_name: str, reason: str) -> None:
        super().__init__(f"{path}: {field_name}: {reason}")


@dataclass(frozen=True)
class Share:
    """A function's share of all cycles in a measured profile of one design."""

    function: str
    design: str
    pct: float
    source: str


@dataclass(frozen=True)
class Measurement:
    """One row of the 0day table (facts.md §2)."""

    id: str
    workload: str
    profile: str
    patch: str
    change_pct: float
    unit: str
    ops_per_unit: float
    source: str
    base: float | None = None
    patched: float | None = None
    shares: tuple[Share, ...] = ()

    @property
    def base_ops_per_s(self) -> float | None:
        """The v6.13 rate in model operations per second per thread."""
        return None if self.base is None else self.base * self.ops_per_unit


@dataclass(frozen=True)
class Workload:
    name: str
    metric: str
    loop_body: str
    source: str
    notes: str
    ops_per_period: int
    scenario: Scenario
    measurements: tuple[Measurement, ...]
    path: str = "<memory>"

    @property
    def tasks(self) -> int:
        """How many tasks run the loop at once (each makes ``ops_per_period`` operations)."""
        return len(self.scenario.tasks)


def _str(path: str, where: str, doc: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = doc.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise WorkloadError(path, f"{where}{key}", "is required (a non-empty string)")
    return value


def _num(path: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WorkloadError(path, where, f"must be a finite number, not {value!r}")
    return float(value)


def _measurement(path: str, i: int, workload: str, t: Any) -> Measurement:
    where = f"measured[{i}]."
    if not isinstance(t, dict):
        raise WorkloadError(path, f"measured[{i}]", "must be a table")
    allowed = {
        "id",
        "profile",
        "patch",
        "base",
        "patched",
        "change_pct",
        "unit",
        "ops_per_unit",
        "ops_per_unit_source",
        "source",
        "share",
    }
    for key in t:
        if key not in allowed:
            raise WorkloadError(path, where + key, "unknown field")
    shares = []
    for k, s in enumerate(t.get("share", [])):
        sw = f"{where}share[{k}]."
        if not isinstance(s, dict):
            raise WorkloadError(path, sw[:-1], "must be a table")
        design = _str(path, sw, s, "design")
        if design not in ("v6.13", "v6.14"):
            raise WorkloadError(path, sw + "design", "must be v6.13 or v6.14")
        pct = _num(path, sw + "pct", s.get("pct"))
        if not 0 <= pct < 100:
            raise WorkloadError(path, sw + "pct", "must be in [0, 100)")
        shares.append(
            Share(_str(path, sw, s, "function"), design, pct, _str(path, sw, s, "source"))
        )
    base = _num(path, where + "base", t["base"]) if "base" in t else None
    patched = _num(path, where + "patched", t["patched"]) if "patched" in t else None
    if base is not None and base <= 0:
        raise WorkloadError(path, where + "base", "must be > 0")
    ops_per_unit = _num(path, where + "ops_per_unit", t.get("ops_per_unit", 1.0))
    if ops_per_unit <= 0:
        raise WorkloadError(path, where + "ops_per_unit", "must be > 0")
    return Measurement(
        _str(path, where, t, "id"),
        workload,
        _str(path, where, t, "profile"),
        _str(path, where, t, "patch", required=False),
        _num(path, where + "change_pct", t.get("change_pct")),
        _str(path, where, t, "unit"),
        ops_per_unit,
        _str(path, where, t, "source"),
        base,
        patched,
        tuple(shares),
    )


def parse_workload(doc: Mapping[str, Any], path: str = "<memory>") -> Workload:
    allowed = {
        "name",
        "metric",
        "loop_body",
        "source",
        "notes",
        "ops_per_period",
        "scenario",
        "measured",
    }
    for key in doc:
        if key not in allowed:
            raise WorkloadError(path, key, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    name = _str(path, "", doc, "name")
    ops = doc.get("ops_per_period", 1)
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 1:
        raise WorkloadError(path, "ops_per_period", f"must be an integer >= 1, not {ops!r}")
    raw = doc.get("scenario")
    if not isinstance(raw, dict):
        raise WorkloadError(path, "scenario", "is required (a scenario table)")
    raw = dict(raw)
    repeat = raw.pop("repeat_calls", 1)
    final = raw.pop("final_calls", [])
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise WorkloadError(path, "scenario.repeat_calls", "must be an integer >= 1")
    calls = raw.get("call", [])
    if not isinstance(calls, list) or not isinstance(final, list):
        raise WorkloadError(path, "scenario.call", "call and final_calls must be lists")
    if len(calls) * repeat + len(final) > MAX_PERIOD_CALLS:
        raise WorkloadError(path, "scenario.repeat_calls", f"more than {MAX_PERIOD_CALLS} calls")
    raw["call"] = calls * repeat + final
    try:
        scenario = parse_scenario(raw, f"{path} [scenario]", max_calls=MAX_PERIOD_CALLS)
    except ScenarioError as e:
        raise WorkloadError(path, "scenario", str(e)) from e
    measured = doc.get("measured", [])
    if not isinstance(measured, list):
        raise WorkloadError(path, "measured", "must be a list of tables")
    return Workload(
        name,
        _str(path, "", doc, "metric"),
        _str(path, "", doc, "loop_body"),
        _str(path, "", doc, "source"),
        _str(path, "", doc, "notes", required=False),
        ops,
        scenario,
        tuple(_measurement(path, i, name, t) for i, t in enumerate(measured)),
        path,
    )


def load_workload(path: str | Path) -> Workload:
    p = Path(path)
    try:
        doc = read_toml_file(p, MAX_WORKLOAD_BYTES, "workload file")
    except TomlFileError as e:
        raise WorkloadError(str(p), "-", e.reason) from e
    try:
        return parse_workload(doc, str(p))
    except (RecursionError, MemoryError) as e:
        raise WorkloadError(str(p), "-", f"cannot be checked: {type(e).__name__}") from e


def default_workloads_dir() -> Path:
    """The ``workloads/`` folder of a source checkout, else a wheel's copy (``datadirs``)."""
    return data_dir("workloads")


def load_workloads(directory: str | Path | None = None) -> dict[str, Workload]:
    folder = Path(directory) if directory is not None else default_workloads_dir()
    out: dict[str, Workload] = {}
    for p in sorted(folder.glob("*.toml")):
        w = load_workload(p)
        if w.name in out:
            raise WorkloadError(str(p), "name", f"{w.name!r} is used twice")
        out[w.name] = w
    if not out:
        raise WorkloadError(str(folder), "-", "no workload files (*.toml) here")
    return out


def find_workload(workloads: Mapping[str, Workload], name: str) -> Workload:
    """By full name (``will-it-scale.pwrite1``) or by its test name alone (``pwrite1``)."""
    if name in workloads:
        return workloads[name]
    matches = [w for w in workloads.values() if w.name.split(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    raise KeyError(f"no workload {name!r} (known: {', '.join(workloads)})")
