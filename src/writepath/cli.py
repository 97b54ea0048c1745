"""The command line: a thin layer over the library (``writepath --help``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from writepath.bench import bench_pwrite1
from writepath.judge import judge
from writepath.kernel.filemap import DESIGNS
from writepath.results import RunResult
from writepath.run import run_scenario
from writepath.scenario import Scenario, ScenarioError, load_catalogue, load_scenario
from writepath.trace import function_graph

#: Designs that claim to be correct: a scenario's top-level [expect] applies to them. The broken
#: designs are judged only where a scenario states [expect.design.NAME].
CORRECT_DESIGNS = ("v6.13", "v6.14")


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal, tab-separated plain text otherwise."""
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:  # pragma: no cover - rich is a dependency
            pass
        else:
            table = Table(title=title)
            for h in header:
                table.add_column(h)
            for row in rows:
                table.add_row(*row)
            Console().print(table)
            return
    print(f"# {title}")
    widths = [
        max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _rets(result: RunResult) -> str:
    parts = []
    for c in result.calls:
        v = c.as_expected()
        parts.append("-" if v is None else str(v))
    return ",".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    result = run_scenario(scenario, args.design)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{scenario.name} under {args.design}: {result.verdict}")
        if result.evidence:
            print(f"  evidence: {result.evidence}")
        for k, c in enumerate(result.calls):
            print(f"  call[{k}] {c.op} = {c.as_expected()}")
        for name, f in result.files.items():
            print(f"  file {name}: size {f.size} sha256 {f.sha256()}")
        assert result.counters is not None
        print("  " + " ".join(f"{k}={v}" for k, v in result.counters.items() if v))
    return 0


def _scenarios(paths: Sequence[str]) -> list[Scenario]:
    return load_catalogue(paths or None)


def cmd_compare(args: argparse.Namespace) -> int:
    designs = args.design or list(DESIGNS)
    rows = []
    for s in _scenarios(args.scenarios):
        row = [s.name]
        for d in designs:
            r = run_scenario(s, d, keep_events=False)
            assert r.counters is not None
            cell = _rets(r) if r.verdict == "ok" else r.verdict.upper()
            row.append(f"{cell} ({r.counters['user_access_windows']}w)")
        rows.append(row)
    _table("return values per design (w = user-access windows)", ["scenario", *designs], rows)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    result = run_scenario(load_scenario(args.scenario), args.design)
    sys.stdout.write(function_graph(result.events))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    failures = 0
    judged = 0
    for s in _scenarios(args.scenarios):
        for d in DESIGNS:
            if s.expectation(d) is None or (
                d not in CORRECT_DESIGNS and d not in s.expect_by_design
            ):
                continue
            result = run_scenario(s, d, keep_events=False)
            problems = judge(s, result)
            judged += 1
            if problems:
                failures += 1
                print(f"FAIL {s.name} [{d}]: " + "; ".join(problems))
            elif args.verbose:
                print(f"ok   {s.name} [{d}]")
    print(f"{judged - failures} passed, {failures} failed")
    return 1 if failures else 0


def cmd_bench(args: argparse.Namespace) -> int:
    r = bench_pwrite1(args.seconds, args.design)
    print(f"pwrite1 (4 KiB, resident buffer, tmpfs), design {r.design}")
    print(f"  model:       {r.model_calls_per_s:12,.0f} calls/s")
    print(f"  real kernel: {r.kernel_calls_per_s:12,.0f} calls/s ({r.kernel_method})")
    print(f"  the model is {r.ratio:.1f}x slower per call than the kernel")
    return 0


def cmd_oracle(args: argparse.Namespace) -> int:
    from writepath.oracle import run_oracle

    result = run_oracle(load_scenario(args.scenario), args.dir, timeout=args.timeout)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{result.scenario} on the real kernel: {result.verdict}")
        for k, c in enumerate(result.calls):
            print(f"  call[{k}] {c.op} = {c.as_expected()}")
        for name, f in result.files.items():
            print(f"  file {name}: size {f.size} sha256 {f.sha256()}")
        if result.evidence:
            print(f"  {result.evidence}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from writepath.diff import run_diff

    fss = [f.strip() for f in args.fs.split(",") if f.strip()] if args.fs else None
    return run_diff(_scenarios(args.scenarios), fss, _table)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="writepath",
        description="An executable model of the Linux buffered write path (665575cff098).",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one scenario in the model")
    run.add_argument("scenario")
    run.add_argument("--design", default="v6.14", choices=list(DESIGNS))
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compare", help="scenarios x designs: returns, verdicts, windows")
    cmp_.add_argument("scenarios", nargs="*", help="files or folders (default: the catalogue)")
    cmp_.add_argument("--design", action="append", choices=list(DESIGNS))
    cmp_.set_defaults(func=cmd_compare)

    tr = sub.add_parser("trace", help="an ftrace function_graph trace of one scenario")
    tr.add_argument("scenario")
    tr.add_argument("--design", default="v6.14", choices=list(DESIGNS))
    tr.set_defaults(func=cmd_trace)

    ck = sub.add_parser("check", help="judge every scenario's [expect]; non-zero on a mismatch")
    ck.add_argument("scenarios", nargs="*")
    ck.add_argument("-v", "--verbose", action="store_true")
    ck.set_defaults(func=cmd_check)

    be = sub.add_parser("bench", help="model speed beside the real kernel's (pwrite1)")
    be.add_argument("--seconds", type=float, default=2.0)
    be.add_argument("--design", default="v6.14", choices=list(DESIGNS))
    be.set_defaults(func=cmd_bench)

    orc = sub.add_parser("oracle", help="replay one scenario on this machine's kernel")
    orc.add_argument("scenario")
    orc.add_argument("--dir", default=None, help="where to create the files (default: per fs)")
    orc.add_argument("--timeout", type=float, default=10.0)
    orc.add_argument("--json", action="store_true")
    orc.set_defaults(func=cmd_oracle)

    df = sub.add_parser("diff", help="model against the real kernel, scenario by scenario")
    df.add_argument("scenarios", nargs="*")
    df.add_argument("--fs", default=None, help="comma-separated: tmpfs,ext4,xfs,ramfs")
    df.set_defaults(func=cmd_diff)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
    except ScenarioError as e:
        print(f"writepath: {e}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
