"""The command line: a thin layer over the library (``writepath --help``).

The library computes results and report objects; this module loads the scenarios, renders what
comes back (text, tables, JSON) and picks the exit code. It is also the one boundary where
errors become messages: a bad scenario or bad usage is one line on stderr, a bug is an
"internal error" line (``--debug`` shows the traceback); no traceback reaches a user otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import textwrap
import threading
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from writepath import scenario as scenario_mod
from writepath.kernel.filemap import DESIGNS
from writepath.report import (
    CORRECT_DESIGNS,
    CheckReport,
    CompareReport,
    check_scenarios,
    compare_scenarios,
)
from writepath.results import SHA256_LIMIT, FileState, RunResult
from writepath.run import run_scenario
from writepath.scenario import FILESYSTEMS, Scenario, ScenarioError, load_catalogue, load_scenario

if TYPE_CHECKING:
    from rich.progress import Progress

    from writepath.report import DiffReport

# Kept importable from here for callers that judged the catalogue through the command line.
__all__ = ["CORRECT_DESIGNS", "build_parser", "main"]

#: The design run when none is named: this machine's kernel release (6.18), whose loops the
#: oracle compares against.
DEFAULT_DESIGN = "v6.18"

EXIT_OK = 0
EXIT_DIFFERENCE = 1
EXIT_ERROR = 2
EXIT_SKIPPED = 3
EXIT_INTERNAL = 4
#: 128 + the signal number, as a shell reports a process the signal ended.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143

EXIT_CODES_HELP = """\
exit codes:
  0  success: the run finished; check: every judged case passed; diff: every comparison
     agrees (skips beside agreements allowed); oracle: the kernel run completed
  1  a difference: check found a mismatch, diff found a model/kernel difference
  2  error: invalid scenario or usage, an oracle error/timeout/signal, or check/diff with
     nothing judged at all
  3  skip-only: diff or oracle could compare nothing, everything was skipped
  4  internal error (a bug): rerun with --debug for the traceback
  130 interrupted (Ctrl-C); 141 stdout closed early (e.g. piped into head);
  143 terminated (SIGTERM), after removing what the run had set up

SCENARIO arguments are files, folders of *.toml files, or catalogue names
(e.g. self-mmap-same-page); with none, the catalogue is used."""


class UsageError(Exception):
    """A request the command cannot carry out as asked: one line, exit 2."""


# -- scenario lookup ----------------------------------------------------------------------------
# find_scenario, check_memory and DEFAULT_MAX_MEMORY live in scenario.py; they are re-exported
# here because the command line is where they meet the user.
find_scenario = scenario_mod.find_scenario
check_memory = scenario_mod.check_memory
DEFAULT_MAX_MEMORY = scenario_mod.DEFAULT_MAX_MEMORY

#: ``run --json`` gives every call its tracepoints, which needs the run's whole event log; a
#: scenario that writes more than this gives ``trace: null`` instead of holding that log.
RUN_TRACE_LIMIT = 64 << 20


def _load_one(args: argparse.Namespace) -> Scenario:
    s = load_scenario(find_scenario(args.scenario))
    check_memory(s, args.max_memory)
    return s


def _load_many(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios named on the command line (folders, files or catalogue names; default the
    catalogue), each checked against --max-memory before anything runs."""
    targets: list[str | Path] = [
        arg if Path(arg).exists() else find_scenario(arg) for arg in args.scenarios
    ]
    scenarios = load_catalogue(targets or None)
    if not scenarios:
        where = ", ".join(args.scenarios) or str(scenario_mod.default_catalogue())
        raise UsageError(f"{args.command}: nothing to run: no scenario files in {where}")
    for s in scenarios:
        check_memory(s, args.max_memory)
    return scenarios


# -- argument types -----------------------------------------------------------------------------


def positive_float(text: str) -> float:
    """A number of seconds > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
    return value


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def byte_size(text: str) -> int:
    """A byte count with an optional binary suffix K, M, G or T (3G = 3 GiB) (argparse type)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte count such as 512M or 3G")
    value = int(m.group(1)) << _SIZE_SHIFT[m.group(2).lower()]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def filesystem_list(text: str) -> list[str]:
    """Comma-separated filesystem names the model has (argparse type)."""
    names = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in names if f not in FILESYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown filesystem {', '.join(unknown) or repr(text)} "
            f"(the model has: {', '.join(FILESYSTEMS)})"
        )
    return names


def _version() -> str:
    try:
        return f"writepath {metadata.version('writepath')}"
    except metadata.PackageNotFoundError:
        return "writepath (version unknown: the package is not installed)"


# -- progress -----------------------------------------------------------------------------------

#: A run alone gets a spinner only once it has taken this long, so quick commands stay quiet.
SPINNER_DELAY = 1.0


class ProgressDisplay:
    """A transient rich progress display on stderr while a command works, fed by the library's
    progress hook: a bar at once for more than one scenario, otherwise a spinner that appears
    only after SPINNER_DELAY seconds. Nothing at all when stderr is not a terminal, and never
    anything on stdout (which may be carrying JSON)."""

    def __init__(self, label: str, many: bool) -> None:
        self._label = label
        self._many = many
        self._progress: Progress | None = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    def __enter__(self) -> ProgressDisplay:
        if not sys.stderr.isatty():
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}", markup=False)]
        if self._many:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        self._progress = Progress(
            *columns,
            console=Console(stderr=True),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(self._label, total=None)
        if self._many:
            self._start()
        else:
            self._timer = threading.Timer(SPINNER_DELAY, self._start)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _start(self) -> None:
        with self._lock:
            if self._progress is not None and not self._closed and not self._started:
                self._progress.start()
                self._started = True

    def hook(self, done: int, total: int, label: str) -> None:
        if self._progress is not None:
            description = f"{self._label} {label}".rstrip()
            self._progress.update(self._task, completed=done, total=total, description=description)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._started and self._progress is not None:
                self._progress.stop()


# -- rendering ----------------------------------------------------------------------------------


#: The narrowest a column of scenario names (or of reasons) gets on a terminal before the table
#: falls back to plain text; and the widest a column of names gets.
_MIN_FOLD_WIDTH = 20
_MAX_NAME_WIDTH = 48


def _fold(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken between words or after a hyphen
    where possible (scenario names are hyphenated), inside a word where not."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=True)) or text


def _longest_part(text: str) -> int:
    """The widest piece ``text`` can be broken into at spaces and after hyphens."""
    return max((len(w) for w in re.split(r"\s+|(?<=-)", text) if w), default=0)


def _table(title: str, header: list[str], rows: list[list[str]], free_text: bool = False) -> None:
    """A rich table that fits the terminal on a terminal, aligned plain text otherwise.

    Where the table is too wide, value cells wrap between words and headers after hyphens, and
    the first column (scenario names) and a last ``free_text`` column (reasons) fold to the
    width that is left, down to 20 characters. Where even that does not fit, the plain text is
    printed: the terminal wraps its lines, but nothing is cut off."""
    if sys.stdout.isatty():
        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = Console()
        last = len(header) - 1
        columns = [[h, *(r[k] for r in rows)] for k, h in enumerate(header)]
        natural = [max(len(c) for c in col) for col in columns]
        natural[0] = min(natural[0], _MAX_NAME_WIDTH)
        # Each column costs a space either side and a separator besides its text.
        room = console.width - (3 * len(header) + 1)
        folded = {0, last} if free_text else {0}
        widths = list(natural)
        narrow = sum(natural) > room
        if narrow:
            for k, col in enumerate(columns):
                if k not in folded:
                    widths[k] = max(_longest_part(col[0]), *(_longest_part(c) for c in col[1:]))
            left = room - sum(w for k, w in enumerate(widths) if k not in folded)
            if free_text:
                widths[0] = min(natural[0], max(_MIN_FOLD_WIDTH, left // 3))
                widths[last] = min(natural[last], left - widths[0])
            else:
                widths[0] = min(natural[0], left)
        if all(widths[k] >= min(_MIN_FOLD_WIDTH, natural[k]) for k in folded):
            table = Table(title=title, box=box.SIMPLE_HEAD)
            for k, h in enumerate(header):
                text = _fold(h, widths[k]) if narrow else h
                table.add_column(text, min_width=widths[k], no_wrap=k in folded)
            for row in rows:
                table.add_row(
                    *(_fold(c, widths[k]) if k in folded else c for k, c in enumerate(row))
                )
            console.print(table)
            return
    print(f"# {title}")
    widths = [
        max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _ret_text(ret: int | str | None) -> str:
    """A call's return as text: a count, an errno name, or that it never returned."""
    return "did not return" if ret is None else str(ret)


def _sha256_text(f: FileState) -> str:
    digest = f.sha256()
    if digest is None:
        return f"not computed (over {SHA256_LIMIT >> 20} MiB)"
    return digest


def _print_result(result: RunResult, heading: str) -> None:
    """The text form of one run (model or kernel); never prints a Python None."""
    print(f"{heading}: {result.verdict}")
    if result.evidence:
        print(f"  evidence: {result.evidence}")
    for k, c in enumerate(result.calls):
        print(f"  call[{k}] {c.op} = {_ret_text(c.as_expected())}")
    for name, f in result.files.items():
        print(f"  file {name}: size {f.size} sha256 {_sha256_text(f)}")
    if result.counters:
        counters = " ".join(f"{k}={v}" for k, v in result.counters.items() if v)
        if counters:
            print(f"  {counters}")


# -- commands -----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    scenario = _load_one(args)
    traces = args.json and written_bytes(scenario) <= RUN_TRACE_LIMIT
    with ProgressDisplay(f"{scenario.name} [{args.design}]", many=False):
        result = run_scenario(scenario, args.design, keep_events=False, traces=traces)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_result(result, f"{scenario.name} under {args.design}")
    return EXIT_OK


def written_bytes(scenario: Scenario) -> int:
    """The most the scenario's calls could write, summed over calls."""
    return sum(sum(max(0, v.length) for v in c.iov) for c in scenario.calls)


def _cell_text(verdict: str, rets: Sequence[int | str | None], windows: int) -> str:
    returns = ",".join("-" if r is None else str(r) for r in rets)
    return f"{returns if verdict == 'ok' else verdict.upper()} ({windows}w)"


def render_compare(report: CompareReport) -> None:
    from writepath.kernel.filemap import LOOP_FORMS

    loops = sorted({loop for row in report.rows for loop in row.loops})
    _table(
        "where each loop faults the source in, per design",
        ["loop", *report.designs],
        [[loop, *(LOOP_FORMS[d][loop] for d in report.designs)] for loop in loops],
    )
    rows = [
        [
            row.scenario,
            "+".join(loop.split("_")[0] for loop in row.loops),
            *(_cell_text(c.verdict, c.rets, c.user_access_windows) for c in row.cells),
        ]
        for row in report.rows
    ]
    _table(
        "return values per design (w = user-access windows)",
        ["scenario", "loop", *report.designs],
        rows,
    )


def cmd_compare(args: argparse.Namespace) -> int:
    scenarios = _load_many(args)
    designs = tuple(args.design or DESIGNS)
    with ProgressDisplay("compare", many=len(scenarios) > 1) as display:
        report = compare_scenarios(scenarios, designs, progress=display.hook)
    render_compare(report)
    return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    from writepath.trace import function_graph

    scenario = _load_one(args)
    with ProgressDisplay(f"{scenario.name} [{args.design}]", many=False):
        result = run_scenario(scenario, args.design, keep_events=True)
    sys.stdout.write(function_graph(result.events))
    return EXIT_OK


def render_check(report: CheckReport, verbose: bool) -> None:
    for case in report.cases:
        if not case.passed:
            print(f"FAIL {case.scenario} [{case.design}]: " + "; ".join(case.problems))
        elif verbose:
            print(f"ok   {case.scenario} [{case.design}]")
    summary = f"{report.passed} passed, {report.failed} failed"
    if report.unjudged:
        summary += f"; {len(report.unjudged)} scenario(s) without an [expect] to judge"
    print(summary)


def check_exit_code(report: CheckReport) -> int:
    if report.failed:
        return EXIT_DIFFERENCE
    return EXIT_OK if report.cases else EXIT_ERROR


def cmd_check(args: argparse.Namespace) -> int:
    scenarios = _load_many(args)
    with ProgressDisplay("check", many=len(scenarios) > 1) as display:
        report = check_scenarios(scenarios, progress=display.hook)
    if not report.cases:
        raise UsageError(
            f"check: nothing judged: none of the {len(scenarios)} scenario(s) has an [expect] "
            f"for {' or '.join(CORRECT_DESIGNS)} or an [expect.design.NAME]"
        )
    render_check(report, args.verbose)
    return check_exit_code(report)


#: The keys of ``writepath bench --json`` for the model's own speed (issue 9).
SPEED_JSON_KEYS = ("model_calls_per_s", "kernel_calls_per_s", "ratio", "samples")


def cmd_bench(args: argparse.Namespace) -> int:
    """``writepath bench WORKLOAD --profile P`` and ``--0day``: the cost model's prediction
    beside the kernel test robot's measurement; with neither, the model's own speed."""
    if args.workload or args.zeroday:
        from writepath.cost.cli import bench_main

        with ProgressDisplay("bench", many=False):
            return bench_main(args)
    if args.profile:
        raise UsageError("bench: --profile needs a WORKLOAD (or --0day)")
    design = args.design or DEFAULT_DESIGN
    if design not in DESIGNS:
        raise UsageError(f"bench: unknown design {design!r} (known: {', '.join(DESIGNS)})")
    # The speed bench's two names arrive with the model helper's bench.py (merged by the lead).
    from writepath.bench import (
        render_speed,
        speed_report,
    )

    with ProgressDisplay(f"bench [{design}]", many=False):
        doc = speed_report(samples=args.samples, seconds=args.seconds, design=design)
    if args.save:
        Path(args.save).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({k: doc[k] for k in SPEED_JSON_KEYS}, indent=2))
    else:
        print(render_speed(doc))
    return EXIT_OK


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def oracle_exit_code(verdict: str) -> int:
    if verdict == "ok":
        return EXIT_OK
    return EXIT_SKIPPED if verdict == "skip" else EXIT_ERROR


def cmd_oracle(args: argparse.Namespace) -> int:
    from writepath.mounts import FsPool
    from writepath.oracle import run_oracle

    scenario = _load_one(args)
    # The pool first: its private mount namespace can only be made before the display's thread.
    with (
        FsPool(args.dir) as pool,
        ProgressDisplay(f"{scenario.name} [kernel]", many=False),
    ):
        result = run_oracle(scenario, args.dir, timeout=args.timeout, pool=pool, trace=args.trace)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_result(result, f"{result.scenario} on the real kernel")
    return oracle_exit_code(result.verdict)


def diff_exit_code(report: DiffReport, strict_trace: bool = False) -> int:
    """1 on any difference in the end state; else 2 on any kernel error; else 0 if something
    agreed, 3 if every comparison was skipped. A trace that differs where the end state agrees
    is reported, not failed (README "Tracepoints"), unless ``strict_trace``: then it is a
    difference too (CI holds tmpfs, ext4 and xfs to it)."""
    totals = report.totals
    if totals["differ"] or (strict_trace and totals["trace-differs"]):
        return EXIT_DIFFERENCE
    if totals["error"]:
        return EXIT_ERROR
    return EXIT_OK if totals["agree"] or totals["trace-differs"] else EXIT_SKIPPED


def render_diff(report: DiffReport, as_json: bool) -> None:
    totals = report.totals
    if as_json:
        for row in report.rows:
            print(json.dumps(row.to_json()))
        print(json.dumps({"totals": totals}))
        return
    _table(
        f"model ({report.design}) against kernel {report.kernel}",
        ["scenario", "fs", "result", "reason"],
        [[r.scenario, r.fs, r.result, r.reason] for r in report.rows],
        free_text=True,
    )
    traces = (
        f" ({totals['trace-differs']} more agree in end state but not in trace)"
        if totals["trace-differs"]
        else ""
    )
    print(
        f"{totals['agree']} agree{traces}, {totals['differ']} differ, "
        f"{totals['skip']} skipped, {totals['error']} errors"
    )


def cmd_diff(args: argparse.Namespace) -> int:
    from writepath.diff import run_diff
    from writepath.mounts import FsPool

    scenarios = _load_many(args)
    many = len(scenarios) > 1 or len(args.fs or ()) > 1
    # The pool first: its private mount namespace can only be made before the display's thread.
    with FsPool() as pool, ProgressDisplay("diff", many=many) as display:
        report = run_diff(
            scenarios,
            args.fs,
            timeout=args.timeout,
            progress=display.hook,
            pool=pool,
            trace=args.trace,
        )
    render_diff(report, args.json)
    return diff_exit_code(report, strict_trace=args.strict_trace)


# -- parser and entry point ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Accepted before the command and after it: writepath --debug run X, writepath run X --debug.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an internal error",
    )
    memory = argparse.ArgumentParser(add_help=False)
    memory.add_argument(
        "--max-memory",
        type=byte_size,
        default=DEFAULT_MAX_MEMORY,
        metavar="BYTES",
        help="refuse a scenario estimated to need more memory than this; suffixes K, M, G "
        f"(default: {DEFAULT_MAX_MEMORY >> 30}G)",
    )
    formatter = argparse.RawDescriptionHelpFormatter

    p = argparse.ArgumentParser(
        prog="writepath",
        description="An executable model of the Linux buffered write path (665575cff098).",
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            parents=[common, memory],
            formatter_class=formatter,
        )

    one = "SCENARIO is a file or a catalogue name (e.g. self-mmap-same-page)."

    run = command(
        "run",
        "run one scenario in the model",
        f"{one}\nexit codes: 0 the run finished (whatever its verdict), 2 invalid scenario "
        "or usage, 4 internal error",
    )
    run.add_argument("scenario", metavar="SCENARIO")
    run.add_argument("--design", default=DEFAULT_DESIGN, choices=list(DESIGNS))
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object; each call carries its tracepoints (trace: null when the "
        f"scenario writes more than {RUN_TRACE_LIMIT >> 20} MiB)",
    )
    run.set_defaults(func=cmd_run)

    many = "SCENARIO: files, folders or catalogue names (default: the catalogue)"
    cmp_ = command(
        "compare",
        "scenarios x designs: returns, verdicts, windows",
        "exit codes: 0 done, 2 invalid scenario or usage (or no scenarios), 4 internal error",
    )
    cmp_.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=many)
    cmp_.add_argument("--design", action="append", choices=list(DESIGNS))
    cmp_.set_defaults(func=cmd_compare)

    tr = command(
        "trace",
        "an ftrace function_graph trace of one scenario",
        f"{one}\nexit codes: 0 done, 2 invalid scenario or usage, 4 internal error",
    )
    tr.add_argument("scenario", metavar="SCENARIO")
    tr.add_argument("--design", default=DEFAULT_DESIGN, choices=list(DESIGNS))
    tr.set_defaults(func=cmd_trace)

    ck = command(
        "check",
        "judge every scenario's [expect]; non-zero on a mismatch",
        "exit codes: 0 every judged case passed, 1 a mismatch, 2 invalid scenario or usage, "
        "or nothing judged (no scenarios, or none with an [expect]), 4 internal error",
    )
    ck.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=many)
    ck.add_argument("-v", "--verbose", action="store_true", help="list the cases that pass too")
    ck.set_defaults(func=cmd_check)

    from writepath.cost import cli as cost_cli

    be = sub.add_parser(
        "bench",
        help="predicted ops/s per design beside 0day's; without WORKLOAD, the model's speed",
        description="With WORKLOAD and --profile, or --0day: the cost model's predicted "
        "operations per second under v6.13 and v6.14 beside the kernel test robot's "
        "measurement, lkp style (base  %change  patched). Without either: the model's own "
        "speed on pwrite1 beside this machine's kernel.",
        parents=[common],
        formatter_class=formatter,
        epilog="examples:\n  writepath bench pwrite1 --profile gnr-xeon-6972p\n"
        "  writepath bench --0day --json\n  writepath bench --json\n"
        "exit codes: 0 done, 2 usage, an unknown workload or profile, or an invalid profile "
        "or workload file, 4 internal error",
    )
    cost_cli.add_bench_arguments(be)
    be.add_argument(
        "--design",
        default=None,
        help="with WORKLOAD: only this design (v6.13 or v6.14) in --json; without: the "
        f"design whose speed is measured (default {DEFAULT_DESIGN})",
    )
    be.add_argument("--json", action="store_true", help="print JSON (the shape of issue 9)")
    be.add_argument(
        "--samples", type=positive_int, default=5, help="speed bench: samples of each side"
    )
    be.add_argument(
        "--seconds", type=positive_float, default=0.5, help="speed bench: seconds per sample"
    )
    be.set_defaults(func=cmd_bench)

    # The cost model's other commands: sweep and profiles.
    cost_cli.add_parsers(sub, parents=[common])

    orc = command(
        "oracle",
        "replay one scenario on this machine's kernel",
        f"{one}\nexit codes: 0 the kernel run completed, 2 invalid scenario or usage, or the "
        "kernel run failed (error, timeout, signal), 3 skipped (cannot be set up here), "
        "4 internal error",
    )
    orc.add_argument("scenario", metavar="SCENARIO")
    orc.add_argument("--dir", default=None, help="where to create the files (default: per fs)")
    orc.add_argument(
        "--timeout", type=positive_float, default=10.0, help="seconds before the run is killed"
    )
    orc.add_argument("--json", action="store_true", help="print one JSON object")
    orc.add_argument(
        "--trace",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="record each call's tracepoints through tracefs (default: on where permitted)",
    )
    orc.set_defaults(func=cmd_oracle)

    df = command(
        "diff",
        "model against the real kernel, scenario by scenario",
        "exit codes: 0 everything compared agrees (skips allowed beside agreements), "
        "1 a difference, 2 invalid scenario or usage, or a kernel run failed (error, timeout, "
        "signal) with no difference, 3 everything skipped, 4 internal error",
    )
    df.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=many)
    df.add_argument(
        "--fs",
        type=filesystem_list,
        default=None,
        help=f"comma-separated, from: {','.join(FILESYSTEMS)} (default: each scenario's own)",
    )
    df.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        help="seconds before one kernel run is killed",
    )
    df.add_argument(
        "--trace",
        action="store_true",
        help="also compare each call's tracepoints, model against kernel (README Tracepoints)",
    )
    df.add_argument(
        "--strict-trace",
        action="store_true",
        help="with --trace: a trace that differs is a difference (exit 1), not only reported",
    )
    df.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line per scenario and filesystem, then the totals",
    )
    df.set_defaults(func=cmd_diff)

    # The lab builds and boots kernels: its options and stages live in its own package.
    from writepath.lab import cli as lab_cli

    lab_cli.add_parser(sub)
    # So does the interleaving explorer.
    from writepath.explorer import cli as explore_cli

    explore_cli.add_parser(sub)
    return p


def _error(message: str) -> None:
    print(f"writepath: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null so that the interpreter's
    final flush does not complain about the broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass


class Terminated(Exception):
    """SIGTERM arrived: unwind like an interrupt, so every pool and mount is cleaned up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    # Python's default for SIGTERM ends the process without running finally blocks, which would
    # leave the oracle's directories behind; only the command line installs this.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors: argparse has printed them
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    try:
        rc: int = args.func(args)
        sys.stdout.flush()
    except (ScenarioError, UsageError) as e:
        _error(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Terminated:
        _error("terminated")
        return EXIT_TERMINATED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as e:
        if getattr(args, "debug", False):
            traceback.print_exc()
        _error(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return EXIT_INTERNAL
    return rc


if __name__ == "__main__":
    sys.exit(main())
