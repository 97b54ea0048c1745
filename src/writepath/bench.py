"""Benchmarks: the model's speed beside the real kernel's, reported as a ratio.

``pwrite1`` is will-it-scale's pwrite1 loop for one task: ``pwrite(fd, buf, 4096, 0)`` from a
resident 4 KiB buffer into a file on tmpfs. The real kernel's rate comes from the same loop in C
(compiled here with ``cc`` when there is one; else Python's ``os.pwrite``, whose interpreter
overhead makes the kernel look slower and the ratio kinder — the report says which was used).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from writepath.run import setup, syscall
from writepath.scenario import Scenario, parse_scenario
from writepath.sched import run_alone

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


@dataclass(frozen=True)
class BenchResult:
    name: str
    model_calls_per_s: float
    kernel_calls_per_s: float
    kernel_method: str
    design: str

    @property
    def ratio(self) -> float:
        """How many times slower per call the model is than the real kernel."""
        return self.kernel_calls_per_s / self.model_calls_per_s


def model_rate(scenario: Scenario, design: str, seconds: float) -> float:
    machine = setup(scenario, design)
    call = scenario.calls[0]
    events = machine.kernel.events
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            run_alone(machine.kernel, machine.task, syscall(machine, call))
        n += 200
        events.clear()  # the log would otherwise grow without bound
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def kernel_rate(seconds: float, directory: str = "/dev/shm") -> tuple[float, str]:
    """The real kernel's pwrite1 rate on this machine, in a child process."""
    cc = shutil.which("cc") or shutil.which("gcc")
    where = directory if os.path.isdir(directory) else tempfile.gettempdir()
    with tempfile.TemporaryDirectory(dir=where) as tmp, tempfile.TemporaryDirectory() as build:
        target = str(Path(tmp) / "pwrite1.dat")
        if cc:
            # Built outside the tmpfs, which may be mounted noexec.
            src = Path(build) / "pwrite1.c"
            exe = Path(build) / "pwrite1"
            src.write_text(_C_LOOP)
            subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
            out = subprocess.run(
                [str(exe), target, str(seconds)],
                check=True,
                capture_output=True,
                text=True,
                timeout=seconds + 30,
            ).stdout.split()
            return int(out[0]) / float(out[1]), "C loop"
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
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
        return n / (time.perf_counter() - start), "Python os.pwrite loop"


def bench_pwrite1(seconds: float = 2.0, design: str = "v6.14") -> BenchResult:
    scenario = parse_scenario(PWRITE1, "<bench>")
    model = model_rate(scenario, design, seconds)
    kernel, method = kernel_rate(seconds)
    return BenchResult("pwrite1", model, kernel, method, design)
