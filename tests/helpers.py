"""Small builders shared by the tests."""

from __future__ import annotations

from typing import Any

from writepath import RunResult, Scenario, parse_scenario, run_scenario

P = 4096


def scenario(**doc: Any) -> Scenario:
    doc.setdefault("name", "t")
    doc.setdefault("file", [{"name": "target", "fs": "tmpfs", "size": 0, "data": "zero"}])
    return parse_scenario(doc, "<test>")


def run(doc: dict[str, Any], design: str = "v6.14") -> RunResult:
    return run_scenario(scenario(**doc), design)
