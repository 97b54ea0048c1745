"""What the copy-first change would change for xfs and btrfs users: every catalogue scenario,
retargeted to each filesystem, under the release design (v6.18) and under ``proposed``.

Run: ``python -m tools.proposed_changes`` (README "Findings" quotes its output).
"""

from __future__ import annotations

from collections import defaultdict

from writepath.diff import retarget
from writepath.results import RunResult
from writepath.run import run_scenario
from writepath.scenario import ScenarioError, load_catalogue


def outcome(r: RunResult) -> str:
    rets = ",".join(str(c.as_expected()) for c in r.calls)
    sizes = ",".join(str(f.size) for f in r.files.values())
    stale = ";".join(f"{list(f.stale)}" for f in r.files.values() if f.stale)
    return f"{r.verdict} ret={rets} size={sizes}" + (f" stale={stale}" if stale else "")


def main() -> None:
    for fs in ("xfs", "btrfs"):
        changes: dict[tuple[str, str], list[str]] = defaultdict(list)
        total = 0
        for s in load_catalogue():
            try:
                t = retarget(s, fs)
            except ScenarioError:
                continue
            total += 1
            now = run_scenario(t, "v6.18", keep_events=False)
            then = run_scenario(t, "proposed", keep_events=False)
            a, b = outcome(now), outcome(then)
            if a != b:
                kind = (now.verdict, then.verdict)
                changes[kind].append(f"  {s.name}: {a}  ->  {b}")
        changed = sum(len(v) for v in changes.values())
        print(f"{fs}: {changed} of {total} scenarios change under proposed")
        for (old, new), rows in sorted(changes.items()):
            print(f" {old} -> {new}: {len(rows)}")
            print("\n".join(rows))


if __name__ == "__main__":
    main()
