"""Replay a race schedule on the real kernel with userfaultfd, and compare with the model.

The schedule replayed (issue 8, facts.md §1): a pwrite of 4096 bytes from buf + 2048 spans
source pages A (buf) and B (buf + 4096) of untouched anonymous memory. The writer's fault-in
touches A, which the handler resolves with the zero page, then B; at B's fault the handler thread
drops A with MADV_DONTNEED, then resolves B. On xfs (iomap still prefaults on 6.18, like v6.13)
the atomic copy then finds A gone and copies nothing; the loop retries, faults A in again (the
handler resolves it) and writes the chunk. Observed: the pwrite's return value, the file's size
and sha256, and the order of the faults the handler served ([A, B, A] when the copy came back
short at A; [A, B] had it not).

With ``trace``, the writer's tracepoints during the pwrite are recorded as ``run_oracle``
records a call's (``oracle.tracing``: a trace instance of the parent's, ``set_event_pid`` = the
writer, markers around the call, addresses and inodes named by a ``Namer``), and
``model_writer_trace`` gives the model's for the same schedule, in the same contract form. The
handler thread is another task, so its madvise and its fault resolution are not in the trace;
the writer's faults on the registered pages are (``page_fault_kernel``, once per exception,
however long the handler kept it waiting).

The run happens in a forked child (its own memory, a userfaultfd, a handler thread); the child
sends its observations back as JSON on a pipe, never as pickle.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import json
import os
import threading
from dataclasses import dataclass, replace
from typing import Any

from writepath.explorer.engine import matching_schedules, short_copies
from writepath.kernel import tracepoints as tp
from writepath.layout import MODEL_BASE, region_bases
from writepath.oracle import tracing, uffd
from writepath.oracle.libc import check, libc
from writepath.oracle.libc import mmap as libc_mmap
from writepath.results import RunResult
from writepath.scenario import Scenario, fill
from writepath.trace import model_call_traces

#: Trace instances of the race replay: the oracle's prefix, this process, a counter.
TRACE_INSTANCE_PREFIX = "writepath-race-"
_instances = itertools.count()

MADV_DONTNEED = 4
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
#: Seconds the parent waits for the child before killing it: the child's work is a few
#: milliseconds; a hang means the fault was never resolved.
CHILD_TIMEOUT = 10.0


@dataclass(frozen=True)
class RaceObservation:
    """What one replay shows: the write's result, the file, and the source pages faulted (page
    index within the region, in order)."""

    ret: int
    errno: str | None
    size: int
    sha256: str
    faults: tuple[int, ...]
    #: The writer's tracepoints during the pwrite (contract form), when a trace was taken.
    trace: tuple[str, ...] | None = None

    def end_state(self) -> RaceObservation:
        """The observation without its trace: what both sides have to agree on."""
        return replace(self, trace=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "ret": self.ret,
            "errno": self.errno,
            "size": self.size,
            "sha256": self.sha256,
            "faults": list(self.faults),
            "trace": None if self.trace is None else list(self.trace),
        }


def _child(
    path: str,
    names: tuple[str, str],
    size: int,
    data: str,
    src_off: int,
    count: int,
    pos: int,
    trace_instance: str | None,
) -> dict[str, Any]:
    with open(path, "wb") as f:
        f.write(fill(data, size))
    buf = libc_mmap(0, 2 * uffd.PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    a, b = buf, buf + uffd.PAGE_SIZE
    fd_uffd = uffd.open_userfaultfd()
    uffd.register_missing(fd_uffd, buf, 2 * uffd.PAGE_SIZE)
    faults: list[int] = []
    dropped = False

    def on_fault(page: int) -> None:
        nonlocal dropped
        faults.append((page - buf) // uffd.PAGE_SIZE)
        if page == b and not dropped:
            # The writer sleeps in its fault on B, A already faulted in: drop A now.
            check(libc.madvise(a, uffd.PAGE_SIZE, MADV_DONTNEED), "madvise")
            dropped = True
        uffd.zeropage(fd_uffd, page)

    stop_r, stop_w = os.pipe()
    handler = threading.Thread(target=uffd.serve, args=(fd_uffd, stop_r, on_fault), daemon=True)
    handler.start()
    fd = os.open(path, os.O_RDWR)
    recorder = None
    if trace_instance is not None:
        region, file = names
        major, minor = tracing.superblock_dev(path)
        namer = tracing.Namer(
            [(region, buf, buf + 2 * uffd.PAGE_SIZE)],
            {(major, minor, os.fstat(fd).st_ino): file},
        )
        # set_event_pid is this (the writer's) pid: the handler thread's events stay out.
        recorder = tracing.Recorder(tracing.TraceInstance(trace_instance))
    try:
        if recorder is not None:
            recorder.begin(0)
        ret = int(libc.pwrite(fd, buf + src_off, count, pos))
        err = ctypes.get_errno() if ret < 0 else 0
        if recorder is not None:
            recorder.end(0)
    finally:
        os.close(fd)
        os.write(stop_w, b"x")
        handler.join(CHILD_TIMEOUT)
    trace = None
    if recorder is not None:
        recorder.stop()
        recorder.check_complete()
        (trace,) = tracing.split_calls(recorder.lines(), os.getpid(), 1, namer)
    with open(path, "rb") as reader:
        content = reader.read()
    return {
        "ret": ret,
        "errno": os.strerror(err) if err else None,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "faults": faults,
        "trace": trace,
    }


def replay_dontneed_race(
    directory: str, scenario: Scenario, trace: bool = False
) -> RaceObservation:
    """Run the scenario's pwrite with A dropped at B's fault, in a child, in ``directory`` (a
    scratch folder on the filesystem under test); the file is named writepath-race-*. With
    ``trace``, the writer's tracepoints too (TraceUnavailable where tracefs cannot be used)."""
    instance = None
    if trace:
        name = f"{TRACE_INSTANCE_PREFIX}{os.getpid()}-{next(_instances)}"
        instance = tracing.TraceInstance.create(name)
    try:
        return _replay(directory, scenario, None if instance is None else instance.path)
    finally:
        if instance is not None:
            instance.remove()


def _replay(directory: str, scenario: Scenario, trace_instance: str | None) -> RaceObservation:
    call = scenario.calls[0]
    target = scenario.file(call.file)
    (iov,) = call.iov
    path = os.path.join(directory, f"writepath-race-{os.getpid()}")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            out = _child(
                path,
                (iov.region, target.name),
                target.size,
                target.data,
                iov.offset,
                iov.length,
                call.pos,
                trace_instance,
            )
        except BaseException as e:
            out = {"error": f"{type(e).__name__}: {e}"}
            code = 1
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
        if os.path.exists(path):
            os.unlink(path)
    data = json.loads(b"".join(chunks) or b'{"error": "the child sent nothing"}')
    if "error" in data:
        raise RuntimeError(f"race replay failed: {data['error']}")
    trace = data["trace"]
    return RaceObservation(
        data["ret"],
        data["errno"],
        data["size"],
        data["sha256"],
        tuple(data["faults"]),
        None if trace is None else tuple(str(t) for t in trace),
    )


def model_faults(scenario: Scenario, result: RunResult) -> tuple[int, ...]:
    """The source pages whose faults the model resolved (not the refused ones), in order: what
    the userfaultfd handler sees on the real kernel."""
    (iov,) = scenario.calls[0].iov
    base = region_bases(scenario.regions, MODEL_BASE)[iov.region]
    return tuple(
        (addr - base) // uffd.PAGE_SIZE
        for kind, _pid, addr, outcome in result.events
        if kind == tp.PAGE_FAULT
        and isinstance(addr, int)
        and outcome in tp.FAULT_HANDLED
        and 0 <= addr - base < 2 * uffd.PAGE_SIZE
    )


def model_short_copy_schedule(scenario: Scenario, design: str) -> tuple[str, RaceObservation]:
    """The simplest schedule under which the model's copy comes back short, and what it shows."""
    found = matching_schedules(scenario, design, 2, lambda r: short_copies(r) > 0)
    if not found:
        raise LookupError(f"{scenario.name}: no schedule within K=2 copies short under {design}")
    record, result = found[0]
    (main,) = record["calls"]["main"]
    file = result.files[scenario.calls[0].file]
    obs = RaceObservation(
        main["ret"],
        main["errno"],
        file.size,
        file.sha256() or "",
        model_faults(scenario, result),
        model_writer_trace(scenario, result),
    )
    return record["schedule"], obs


def model_writer_trace(scenario: Scenario, result: RunResult) -> tuple[str, ...]:
    """The tracepoints of the writer's pwrite in the model's run, in the contract's form: only
    the writer's events (as ``set_event_pid`` keeps only the writer's on the kernel), faults
    only in the scenario's regions."""
    writer = scenario.tasks.index(scenario.calls[0].task) + 1  # pids follow Scenario.tasks
    bases = region_bases(scenario.regions, MODEL_BASE)
    regions = [(r.name, bases[r.name], bases[r.name] + r.length) for r in scenario.regions]
    events = [e for e in result.events if e[1] == writer]
    (trace,) = model_call_traces(events, regions)[:1]
    return trace
