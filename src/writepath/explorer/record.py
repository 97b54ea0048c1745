"""What a search keeps: one record per schedule run, folded into outcomes and violations.

Everything here is plain JSON-able data, so worker processes return it as JSON. Folding is
order-independent (counts add; the schedule kept for an outcome or a violation is the least by
``schedule_order``), so the result is the same however the schedules were split among workers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_DIGITS = re.compile(r"\d+")

#: An outcome: what the program observed (verdict, per-task calls, files).
OutcomeKey = str


def schedule_order(record: dict[str, Any]) -> tuple[int, int, list[int]]:
    """Simplest first: fewer preemptions, fewer choices off the default, then the choices."""
    return (record["preemptions"], record["switches"], record["choices"])


def outcome_of(record: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": record["verdict"], "calls": record["calls"], "files": record["files"]}


@dataclass
class Tally:
    """Outcomes and violations folded from schedule records."""

    schedules: int = 0
    outcomes: dict[OutcomeKey, dict[str, Any]] = field(default_factory=dict)
    violations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        self.schedules += 1
        out = outcome_of(record)
        key = json.dumps(out, sort_keys=True)
        have = self.outcomes.get(key)
        if have is None:
            self.outcomes[key] = {**out, "count": 1, "_best": record}
        else:
            have["count"] += 1
            if schedule_order(record) < schedule_order(have["_best"]):
                have["_best"] = record
        for prop, detail in record["violations"]:
            # One entry per kind of violation: details that differ only in counts (how many
            # retries before the livelock was proven) are the same finding.
            vkey = f"{prop}\0{_DIGITS.sub('N', detail)}"
            v = self.violations.get(vkey)
            if v is None or schedule_order(record) < schedule_order(v["_best"]):
                self.violations[vkey] = {"property": prop, "detail": detail, "_best": record}

    def merge(self, other: Tally) -> None:
        self.schedules += other.schedules
        for key, o in other.outcomes.items():
            have = self.outcomes.get(key)
            if have is None:
                self.outcomes[key] = dict(o)
            else:
                have["count"] += o["count"]
                if schedule_order(o["_best"]) < schedule_order(have["_best"]):
                    have["_best"] = o["_best"]
        for key, v in other.violations.items():
            have = self.violations.get(key)
            if have is None or schedule_order(v["_best"]) < schedule_order(have["_best"]):
                self.violations[key] = dict(v)

    def to_json(self) -> dict[str, Any]:
        return {
            "schedules": self.schedules,
            "outcomes": self.outcomes,
            "violations": self.violations,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(data["schedules"], data["outcomes"], data["violations"])

    def outcome_list(self) -> list[dict[str, Any]]:
        """Outcomes most frequent first (ties by their simplest schedule), in the --json form."""
        items = sorted(
            self.outcomes.values(), key=lambda o: (-o["count"], schedule_order(o["_best"]))
        )
        return [
            {
                "verdict": o["verdict"],
                "calls": o["calls"],
                "files": o["files"],
                "count": o["count"],
                "schedule": o["_best"]["schedule"],
            }
            for o in items
        ]

    def violation_list(self) -> list[dict[str, Any]]:
        items = sorted(
            self.violations.values(),
            key=lambda v: (v["property"], schedule_order(v["_best"]), v["detail"]),
        )
        return [
            {"property": v["property"], "detail": v["detail"], "schedule": v["_best"]["schedule"]}
            for v in items
        ]
