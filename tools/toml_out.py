"""Write scenario dicts as TOML files (used by the catalogue scripts in this folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def dump(s: dict[str, Any]) -> str:
    out = []
    for key in ("name", "description", "source", "rlimit_fsize"):
        if key in s:
            out.append(f"{key} = {_value(s[key])}")
    for section in ("file", "region", "call"):
        for t in s.get(section, []):
            out.append("")
            out.append(f"[[{section}]]")
            out.extend(f"{k} = {_value(v)}" for k, v in t.items())
    if "expect" in s:
        exp = dict(s["expect"])
        designs = exp.pop("design", {})
        out.append("")
        out.append("[expect]")
        out.extend(f"{k} = {_value(v)}" for k, v in exp.items())
        for d, t in designs.items():
            out.append("")
            out.append(f'[expect.design."{d}"]')
            out.extend(f"{k} = {_value(v)}" for k, v in t.items())
    return "\n".join(out) + "\n"


def write_all(scenarios: list[dict[str, Any]], folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for s in scenarios:
        (folder / f"{s['name']}.toml").write_text(dump(s))
