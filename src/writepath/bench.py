"""Benchmarks: the model's speed beside the real kernel's, reported as a ratio.

``pwrite1`` is will-it-scale's pwrite1 loop for one task: ``pwrite(fd, buf, 4096, 0)`` from a
resident 4 KiB buffer into a file on tmpfs. The real kernel's rate comes from the same loop in C
(compiled here with ``cc`` when there is one; else Python's ``os.pwrite``, whose interpreter
overhead makes the kernel look slower and the ratio kinder — the report says which was used).

``speed_report()`` is what ``writepath bench --json`` reports: model and kernel samples taken in
turn, every simulated call checked, median and spread (``render_speed()`` prints it).
The report says whether the model ran as compiled by mypyc (``WRITEPATH_MYPYC=1``, setup.py)
or as plain Python: the same source either way.
``size_scaling()`` measures how one write's time and peak memory grow with its size, 4 KiB to
256 MiB (``python -m writepath.bench --scaling``).
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from writepath.counters import count
from writepath.kernel.read_write import ksys_pwrite64
from writepath.kernel.tracepoints import Event
from writepath.layout import iov_address
from writepath.run import ModelMachine, file_state, release_machine, setup, syscall
from writepath.scenario import Scenario, fill, parse_scenario
from writepath.sched import Verdict, run_alone

PWRITE1 = {
    "name": "bench-pwrite1",
    "description": "will-it-scale pwrite1: pwrite(fd, buf, 4096, 0) from a resident buffer",
    "source": "will-it-scale pwrite1",
    "file": [{"name": "target", "fs": "tmpfs", "size": 4096, "data": "zero"}],
    "region": [{"name": "buf", "pages": 1, "kind": "anon", "touched": True, "data": "pattern"}],
    "call": [{"op": "pwrite", "iov": [["buf", 0, 4096]], "pos": 0}],
}

_C_LOOP = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[4096];
    memset(buf, 1, sizeof(buf));
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); return 1; }
    double seconds = atof(argv[2]);
    struct timespec a, b;
    long n = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (;;) {
        for (int k = 0; k < 1000; k++)
            if (pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf)) { perror("pwrite"); return 1; }
        n += 1000;
        clock_gettime(CLOCK_MONOTONIC, &b);
        double t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
        if (t >= seconds) { printf("%ld %.9f\n", n, t); return 0; }
    }
}
"""


def _python_pwrite_rate(seconds: float, directory: str) -> float:
    """The real kernel's pwrite1 rate through Python's os.pwrite, for a machine without a C
    compiler: the interpreter's overhead makes the kernel look slower (the report says so)."""
    with tempfile.TemporaryDirectory(prefix="writepath-", dir=directory) as tmp:
        fd = os.open(Path(tmp) / "pwrite1.dat", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        buf = b"\1" * 4096
        n = 0
        start = time.perf_counter()
        try:
            while True:
                for _ in range(1000):
                    os.pwrite(fd, buf, 0)
                n += 1000
                if time.perf_counter() - start >= seconds:
                    break
        finally:
            os.close(fd)
        return n / (time.perf_counter() - start)


# --- The model's speed beside the kernel's, sample by sample (``writepath bench --json``) ---

#: Model calls between two looks at the clock (and two clears of the event log).
_BATCH = 200


def _pwrite1_call(machine: ModelMachine, scenario: Scenario) -> Callable[[], int]:
    """One simulated ``pwrite(fd, buf, 4096, 0)`` of PWRITE1, its arguments resolved once, as
    the C loop has them in registers: what is timed is the system call, not the scenario's
    interpretation. Returns what the call returned."""
    (call,) = scenario.calls
    ((base, length),) = [(iov_address(v, machine.bases), v.length) for v in call.iov]
    fd = machine.fds[(call.file, tuple(sorted(call.flags)))]
    kernel, task, pos = machine.kernel, machine.task, call.pos

    def one() -> int:
        outcome = run_alone(kernel, task, ksys_pwrite64(task, fd, base, length, pos))
        if outcome.verdict is not Verdict.OK:
            return -1
        ret = outcome.results[task.pid]
        return ret if isinstance(ret, int) else -1

    return one


def _model_sample(
    one: Callable[[], int], events: list[Event], seconds: float
) -> tuple[int, float, int]:
    """(calls, elapsed seconds, calls that did not return 4096) for about ``seconds``."""
    n = bad = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(_BATCH):
            if one() != 4096:
                bad += 1
        n += _BATCH
        events.clear()  # the log would otherwise grow without bound
        now = time.perf_counter()
        if now >= deadline:
            return n, now - start, bad


@contextmanager
def _kernel_loop(directory: str = "/dev/shm") -> Iterator[Callable[[float], tuple[float, str]]]:
    """A sampler of the real kernel's pwrite1 rate: the C loop compiled once (or, without a C
    compiler, Python's os.pwrite loop), each sample one run of it on a tmpfs file."""
    cc = shutil.which("cc") or shutil.which("gcc")
    where = directory if os.path.isdir(directory) else tempfile.gettempdir()
    with (
        tempfile.TemporaryDirectory(prefix="writepath-", dir=where) as tmp,
        tempfile.TemporaryDirectory(prefix="writepath-") as build,
    ):
        target = str(Path(tmp) / "pwrite1.dat")
        if cc is None:
            yield lambda seconds: (_python_pwrite_rate(seconds, where), "Python os.pwrite loop")
            return
        # Built outside the tmpfs, which may be mounted noexec.
        src = Path(build) / "pwrite1.c"
        exe = Path(build) / "pwrite1"
        src.write_text(_C_LOOP)
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)

        def sample(seconds: float) -> tuple[float, str]:
            out = subprocess.run(
                [str(exe), target, str(seconds)],
                check=True,
                capture_output=True,
                text=True,
                timeout=seconds + 30,
            ).stdout.split()
            return int(out[0]) / float(out[1]), "C loop"

        yield sample


def model_compiled() -> bool:
    """Whether the model's modules are mypyc's extension modules (a ``WRITEPATH_MYPYC=1``
    build) rather than Python source."""
    from importlib.machinery import EXTENSION_SUFFIXES

    import writepath.kernel.filemap
    import writepath.sched

    return all(
        str(m.__file__).endswith(tuple(EXTENSION_SUFFIXES))
        for m in (writepath.kernel.filemap, writepath.sched)
    )


def speed_report(samples: int = 5, seconds: float = 0.5, design: str = "v6.18") -> dict[str, Any]:
    """The model's pwrite1 rate beside the real kernel's, as a JSON-ready dict.

    After a warm-up of each, ``samples`` pairs of ``seconds``-long samples alternate model and
    kernel, so that a change in the machine's load hits both. Every simulated call must return
    4096 and the file must end holding the buffer's bytes, as the kernel's would: a model that
    got faster by getting wrong fails here (``checked_calls`` counts the calls checked; a
    failure raises AssertionError). ``ratio`` is the median of the per-pair ratios (how many
    times slower per call the model is), ``spread`` their minimum and maximum.
    """
    if samples < 1 or seconds <= 0:
        raise ValueError("samples must be at least 1 and seconds positive")
    scenario = parse_scenario(PWRITE1, "<bench>")
    machine = setup(scenario, design)
    try:
        one = _pwrite1_call(machine, scenario)
        events = machine.kernel.events
        pairs: list[dict[str, float]] = []
        checked = 0
        bad = 0
        with _kernel_loop() as kernel_sample:
            _model_sample(one, events, min(seconds, 0.2))  # warm-up
            kernel_sample(min(seconds, 0.2))
            method = "C loop"
            for _ in range(samples):
                n, elapsed, failed = _model_sample(one, events, seconds)
                checked += n
                bad += failed
                kernel, method = kernel_sample(seconds)
                model = n / elapsed
                pairs.append(
                    {
                        "model_calls_per_s": model,
                        "kernel_calls_per_s": kernel,
                        "ratio": kernel / model,
                    }
                )
        if bad:
            raise AssertionError(f"{bad} of {checked} simulated pwrite calls did not return 4096")
        region = scenario.regions[0]
        want = fill(region.data, 4096)
        got = file_state(machine.inodes["target"]).read(0, 4096)
        if got != want:
            raise AssertionError("after the benchmark the model's file does not hold the buffer")
    finally:
        release_machine(machine)
    ratios = [p["ratio"] for p in pairs]
    return {
        "design": design,
        "compiled": model_compiled(),
        "model_calls_per_s": statistics.median(p["model_calls_per_s"] for p in pairs),
        "kernel_calls_per_s": statistics.median(p["kernel_calls_per_s"] for p in pairs),
        "ratio": statistics.median(ratios),
        "spread": {"min": min(ratios), "max": max(ratios)},
        "samples": pairs,
        "kernel_method": method,
        "checked_calls": checked,
        "seconds_per_sample": seconds,
    }


def render_speed(doc: dict[str, Any]) -> str:
    """``speed_report()``'s result as a short text table."""
    lines = [
        f"pwrite1 (4 KiB, resident buffer, tmpfs), design {doc['design']}, "
        f"model: {'compiled by mypyc' if doc.get('compiled') else 'Python'}, "
        f"kernel: {doc['kernel_method']}",
        f"{'sample':>6}  {'model calls/s':>14}  {'kernel calls/s':>14}  {'ratio':>6}",
    ]
    for k, p in enumerate(doc["samples"], 1):
        lines.append(
            f"{k:>6}  {p['model_calls_per_s']:>14,.0f}  {p['kernel_calls_per_s']:>14,.0f}"
            f"  {p['ratio']:>5.1f}x"
        )
    spread = doc["spread"]
    lines.append(
        f"{'median':>6}  {doc['model_calls_per_s']:>14,.0f}  {doc['kernel_calls_per_s']:>14,.0f}"
        f"  {doc['ratio']:>5.1f}x  (spread {spread['min']:.1f}x to {spread['max']:.1f}x)"
    )
    lines.append(
        f"the model is {doc['ratio']:.1f}x slower per call than the kernel; "
        f"{doc['checked_calls']:,} simulated calls checked (each returned 4096, file content right)"
    )
    return "\n".join(lines) + "\n"


# --- How one write's cost grows with its size ---------------------------------------------


def _one_write_scenario(size: int) -> Scenario:
    """A single pwrite of ``size`` bytes at offset 0 into an empty tmpfs file, from a resident
    (touched) anonymous buffer of the same size."""
    pages = (size + 4095) // 4096
    return parse_scenario(
        {
            "name": f"bench-write-{size}",
            "file": [{"name": "target", "fs": "tmpfs", "size": 0, "data": "zero"}],
            "region": [
                {"name": "buf", "kind": "anon", "pages": pages, "touched": True, "data": "pattern"}
            ],
            "call": [{"op": "pwrite", "iov": [["buf", 0, size]], "pos": 0}],
        },
        "<bench>",
    )


def _run_one_write(machine: ModelMachine, scenario: Scenario) -> int:
    counters = count(())

    def drain(batch: list[Event]) -> None:
        count(batch, counters)

    outcome = run_alone(
        machine.kernel, machine.task, syscall(machine, scenario.calls[0]), drain=drain
    )
    ret = outcome.results.get(machine.task.pid)
    return ret if isinstance(ret, int) else -1


#: 4 KiB to 256 MiB, by factors of four.
SCALING_SIZES = tuple(4096 << (2 * k) for k in range(9))


def size_scaling(
    sizes: tuple[int, ...] = SCALING_SIZES, design: str = "v6.18"
) -> list[dict[str, Any]]:
    """For each size, one pwrite of that many bytes on tmpfs: the model's time for the call,
    per MiB, and the peak of memory allocated during the call (tracemalloc, in a second run),
    beside the size. Linear growth shows as a flat ``s_per_mib``; no whole-file copies as a
    ``peak_over_size`` near 1 (the new folios themselves) that does not grow with the size.
    Each call is checked to write all of its bytes."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        scenario = _one_write_scenario(size)
        machine = setup(scenario, design)
        gc.collect()
        start = time.perf_counter()
        ret = _run_one_write(machine, scenario)
        elapsed = time.perf_counter() - start
        written = machine.inodes["target"].i_size
        release_machine(machine)
        if ret != size or written != size:
            raise AssertionError(f"a pwrite of {size} bytes returned {ret}, file size {written}")
        machine = setup(scenario, design)
        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        _run_one_write(machine, scenario)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        release_machine(machine)
        rows.append(
            {
                "size": size,
                "seconds": elapsed,
                "s_per_mib": elapsed / (size / (1 << 20)),
                "peak_bytes": peak - base,
                "peak_over_size": (peak - base) / size,
            }
        )
    return rows


def render_scaling(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'size':>12}  {'seconds':>9}  {'s/MiB':>7}  {'peak MiB':>9}  {'peak/size':>9}"]
    for r in rows:
        lines.append(
            f"{r['size']:>12,}  {r['seconds']:>9.4f}  {r['s_per_mib']:>7.3f}  "
            f"{r['peak_bytes'] / (1 << 20):>9.2f}  {r['peak_over_size']:>9.2f}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:] == ["--scaling"]:
        print(render_scaling(size_scaling()), end="")
    elif sys.argv[1:] == ["--json"]:
        print(json.dumps(speed_report()))
    else:
        print(render_speed(speed_report()), end="")
