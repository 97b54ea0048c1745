"""Instructions per simulated pwrite1 call, counted by callgrind: the README's speed figures.

    python tools/instructions_per_call.py [--python PY] [--calls N1 N2]

Runs the model's pwrite1 call (``writepath.bench``'s, the one ``writepath bench`` times) N1 and
then N2 times under ``valgrind --tool=callgrind`` and prints (total2 - total1) / (N2 - N1): the
interpreter's start-up and the setup cancel out. The build measured is the one PY imports
(``.venv/bin/python`` the Python build, ``.venv-mypyc/bin/python`` the compiled one). It also
prints the share of those instructions spent in CPython's allocation, boxing and freeing
functions (ALLOCATION), the part an event format that allocated nothing could save.

Callgrind counts instructions, not time: the figures repeat whatever else the machine does.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The loop each run executes: the bench's own call, its event log emptied as the bench does.
CHILD = """
import sys
from writepath.bench import PWRITE1, _pwrite1_call
from writepath.run import setup
from writepath.scenario import parse_scenario
scenario = parse_scenario(PWRITE1, "<callgrind>")
machine = setup(scenario, "v6.18")
one = _pwrite1_call(machine, scenario)
events = machine.kernel.events
for _ in range(int(sys.argv[1])):
    if one() != 4096:
        raise SystemExit("a simulated call did not return 4096")
    if len(events) > 1000:
        events.clear()
"""

#: CPython's functions that allocate, box, free and untrack objects (tuples, ints, generators).
ALLOCATION = frozenset(
    {
        "PyTuple_New",
        "tuple_alloc",
        "tupledealloc",
        "_PyTuple_FromArray",
        "PyLong_FromLong",
        "CPyTagged_StealAsObject",
        "_PyObject_Malloc",
        "_PyObject_Free",
        "PyObject_Malloc",
        "_int_malloc",
        "_int_free",
        "PyType_GenericAlloc",
        "_Py_NewReference",
        "PyObject_GC_UnTrack",
        "subtype_dealloc",
        "_PyTrash_begin",
        "_PyTrash_end",
        "_PyTrash_cond",
        "dict_dealloc",
        "list_append",
        "list_clear",
    }
)

_LINE = re.compile(
    r"\s*([\d,]+) \([ \d.]+%\)\s+(?:\S*?:)?(\S+?)(?:'\d+)?(?: \(\d[\d,]*x\))?(?: \[.*\])?$"
)


def _run(python: str, calls: int, out: Path) -> int:
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            python,
            "-c",
            CHILD,
            str(calls),
        ],
        check=True,
        capture_output=True,
        timeout=3600,
    )
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def _by_function(out: Path) -> dict[str, int]:
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            costs[m.group(2)] = costs.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return costs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--python", default=sys.executable, help="the interpreter whose build to measure"
    )
    ap.add_argument("--calls", type=int, nargs=2, default=[1000, 3000], metavar=("N1", "N2"))
    args = ap.parse_args(argv)
    n1, n2 = args.calls
    if not 0 < n1 < n2:
        ap.error("--calls wants 0 < N1 < N2")
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("needs valgrind (callgrind and callgrind_annotate)", file=sys.stderr)
        return 2
    build = subprocess.run(
        [args.python, "-c", "from writepath.bench import model_compiled; print(model_compiled())"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="writepath-callgrind-") as tmp:
        first, second = Path(tmp) / "n1.out", Path(tmp) / "n2.out"
        per_call = (_run(args.python, n2, second) - _run(args.python, n1, first)) / (n2 - n1)
        before, after = _by_function(first), _by_function(second)
    allocation = sum(after.get(f, 0) - before.get(f, 0) for f in ALLOCATION) / (n2 - n1)
    print(f"build: {'compiled by mypyc' if build == 'True' else 'Python'} ({args.python})")
    print(f"instructions per simulated pwrite1 call: {per_call:,.0f} ({n1} and {n2} calls)")
    print(
        f"of which allocating, boxing and freeing: {allocation:,.0f} ({allocation / per_call:.0%})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
