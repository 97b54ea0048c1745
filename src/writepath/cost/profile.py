"""CPU cost profiles: one TOML file per CPU, every number with its unit and its source.

A profile may name ``based_on``: the costs it does not list are taken from that profile, and
their source says so. Missing sources, unknown cost names, wrong units and non-finite or negative
values are refused as ``path: field: reason`` (the scenario reader's convention).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from writepath.datadirs import data_dir
from writepath.scenario import TomlFileError, read_toml_file

#: A profile file is small: one value per cost unit, with its source.
MAX_PROFILE_BYTES = 1 << 20

#: Every cost category the pricing knows, with the unit its value must be given in. This is the
#: schema of a profile, not a cost: the numbers live in the TOML files.
COST_UNITS: dict[str, str] = {
    "syscall": "cycles",
    "llseek": "cycles",
    "write_iter": "cycles",
    "i_rwsem": "cycles",
    "file_update_time": "cycles",
    "page_cache_lookup": "cycles",
    "folio_lock": "cycles",
    "folio_unlock": "cycles",
    "write_begin": "cycles",
    "write_end": "cycles",
    "folio_mark_dirty": "cycles",
    "balance_dirty_pages_ratelimited": "cycles",
    "copy_call": "cycles",
    "copy_byte": "cycles/byte",
    "uaccess_window": "cycles",
    "fault_in_call": "cycles",
    "fault_in_touch": "cycles/page",
    "fault_minor": "cycles",
    "fault_major": "cycles",
    "fault_zero_page": "cycles",
    "fault_refused": "cycles",
    "fault_failed": "cycles",
    "failed_copy": "cycles",
    "retry": "cycles",
}

#: The costs the prefault of v6.13 adds for a resident source; calibration fits the window and
#: leaves these out of the path scale (see ``calibrate``).
PREFAULT_COSTS = ("uaccess_window", "fault_in_call", "fault_in_touch")


class ProfileError(ValueError):
    """A profile that cannot be used: ``path: field: reason``."""

    def __init__(self, path: str, field_name: str, reason: str) -> None:
        super().__init__(f"{path}: {field_name}: {reason}")
        self.path = path
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class Quantity:
    """One number of a profile."""

    value: float
    unit: str
    source: str
    #: Kernel instructions one unit retires (a rep-prefixed instruction counted once, as the
    #: hardware retires it), where measured; None where not. Path length is priced with these.
    insns: float | None = None
    insns_source: str = ""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"value": self.value, "unit": self.unit, "source": self.source}
        if self.insns is not None:
            doc["insns"] = self.insns
            doc["insns_source"] = self.insns_source
        return doc


@dataclass(frozen=True)
class Profile:
    name: str
    cpu: str
    vendor: str
    description: str
    clock: Quantity  # GHz
    smap: bool
    smap_source: str
    costs: Mapping[str, Quantity]
    path: str = "<memory>"
    measurements: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def hz(self) -> float:
        return self.clock.value * 1e9

    def cost(self, name: str) -> float:
        return self.costs[name].value

    def cost_insns(self, name: str) -> float:
        """Instructions one unit of ``name`` retires; ValueError where the profile has none."""
        insns = self.costs[name].insns
        if insns is None:
            raise ValueError(f"{self.name}: {name} has no instruction count (insns)")
        return insns

    def with_costs(self, changes: Mapping[str, Quantity]) -> Profile:
        merged = dict(self.costs)
        merged.update(changes)
        return replace(self, costs=merged)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cpu": self.cpu,
            "vendor": self.vendor,
            "clock": self.clock.to_json(),
            "smap": {"value": self.smap, "source": self.smap_source},
            "costs": {k: q.to_json() for k, q in self.costs.items()},
        }


def _insns(path: str, where: str, table: dict[str, Any]) -> tuple[float | None, str]:
    if "insns" not in table:
        if "insns_source" in table:
            raise ProfileError(path, f"{where}.insns", "insns_source without insns")
        return None, ""
    value = table["insns"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(path, f"{where}.insns", f"must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ProfileError(path, f"{where}.insns", f"must be finite and >= 0, not {value}")
    source = table.get("insns_source")
    if not isinstance(source, str) or not source.strip():
        raise ProfileError(path, f"{where}.insns_source", "every number must cite its source")
    return float(value), source


def _quantity(
    path: str, where: str, table: Any, unit: str, *, number: bool = True, insns: bool = False
) -> Quantity:
    if not isinstance(table, dict):
        raise ProfileError(path, where, "must be a table with value, unit and source")
    allowed = {"value", "unit", "source"} | ({"insns", "insns_source"} if insns else set())
    extra = set(table) - allowed
    if extra:
        raise ProfileError(path, f"{where}.{sorted(extra)[0]}", "unknown field")
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ProfileError(path, f"{where}.source", "every number must cite its source")
    if table.get("unit") != unit:
        raise ProfileError(path, f"{where}.unit", f"must be {unit!r}, not {table.get('unit')!r}")
    value = table.get("value")
    if number:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProfileError(path, f"{where}.value", f"must be a number, not {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ProfileError(path, f"{where}.value", f"must be finite and >= 0, not {value}")
        n_insns, insns_source = _insns(path, where, table) if insns else (None, "")
        return Quantity(float(value), unit, source, n_insns, insns_source)
    if not isinstance(value, bool):
        raise ProfileError(path, f"{where}.value", f"must be true or false, not {value!r}")
    return Quantity(float(value), unit, source)


def parse_profile(
    doc: Mapping[str, Any], path: str = "<memory>", bases: Mapping[str, Profile] | None = None
) -> Profile:
    allowed = {
        "name",
        "cpu",
        "vendor",
        "description",
        "based_on",
        "clock",
        "smap",
        "cost",
        "measurements",
    }
    for key in doc:
        if key not in allowed:
            raise ProfileError(path, key, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(path, "name", "is required")
    texts = {}
    for key in ("cpu", "vendor", "description"):
        value = doc.get(key, "")
        if not isinstance(value, str):
            raise ProfileError(path, key, "must be a string")
        texts[key] = value
    if "clock" not in doc:
        raise ProfileError(path, "clock", "is required")
    clock = _quantity(path, "clock", doc["clock"], "GHz")
    if clock.value <= 0:
        raise ProfileError(path, "clock.value", "must be > 0")
    if "smap" not in doc:
        raise ProfileError(path, "smap", "is required")
    smap = _quantity(path, "smap", doc["smap"], "bool", number=False)
    costs: dict[str, Quantity] = {}
    base_name = doc.get("based_on")
    if base_name is not None:
        if not isinstance(base_name, str) or bases is None or base_name not in bases:
            raise ProfileError(path, "based_on", f"no profile named {base_name!r} to build on")
        for k, q in bases[base_name].costs.items():
            costs[k] = replace(
                q,
                source=f"prior from {base_name}: {q.source}",
                insns_source=q.insns_source and f"prior from {base_name}: {q.insns_source}",
            )
    raw_costs = doc.get("cost", {})
    if not isinstance(raw_costs, dict):
        raise ProfileError(path, "cost", "must be a table of cost tables")
    for key, table in raw_costs.items():
        if key not in COST_UNITS:
            raise ProfileError(
                path, f"cost.{key}", f"unknown cost (known: {', '.join(COST_UNITS)})"
            )
        costs[key] = _quantity(path, f"cost.{key}", table, COST_UNITS[key], insns=True)
    missing = [k for k in COST_UNITS if k not in costs]
    if missing:
        raise ProfileError(path, f"cost.{missing[0]}", "is required (or name a based_on profile)")
    measurements: dict[str, tuple[float, ...]] = {}
    raw_meas = doc.get("measurements", {})
    if not isinstance(raw_meas, dict):
        raise ProfileError(path, "measurements", "must be a table")
    for key, value in raw_meas.items():
        if not isinstance(value, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value
        ):
            raise ProfileError(path, f"measurements.{key}", "must be a list of numbers")
        measurements[key] = tuple(float(x) for x in value)
    return Profile(
        name,
        texts["cpu"],
        texts["vendor"],
        texts["description"],
        clock,
        bool(smap.value),
        smap.source,
        costs,
        path,
        measurements,
    )


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        return read_toml_file(p, MAX_PROFILE_BYTES, "profile file")
    except TomlFileError as e:
        raise ProfileError(str(p), "-", e.reason) from e


def load_profiles(directory: str | Path | None = None) -> dict[str, Profile]:
    """Every ``*.toml`` of ``directory`` (default: the checkout's ``profiles/``), by name.

    Profiles that build on another are read after it, whatever their file names."""
    folder = Path(directory) if directory is not None else default_profiles_dir()
    docs = {p: _read_toml(p) for p in sorted(folder.glob("*.toml"))}
    if not docs:
        raise ProfileError(str(folder), "-", "no profile files (*.toml) here")
    out: dict[str, Profile] = {}
    pending = dict(docs)
    while pending:
        progressed = False
        for p, doc in list(pending.items()):
            base = doc.get("based_on")
            if (
                base is not None
                and base not in out
                and any(d.get("name") == base for d in pending.values())
            ):
                continue
            prof = parse_profile(doc, str(p), out)
            if prof.name in out:
                raise ProfileError(str(p), "name", f"{prof.name!r} is used twice")
            out[prof.name] = prof
            del pending[p]
            progressed = True
        if not progressed:
            p = next(iter(pending))
            raise ProfileError(str(p), "based_on", "profiles build on each other in a cycle")
    return out


def default_profiles_dir() -> Path:
    """The ``profiles/`` folder of a source checkout, else a wheel's copy (``datadirs``)."""
    return data_dir("profiles")
