"""The oracle's child process: set up, make the scenario's calls, read the files back.

The child talks to its parent only through ``encode_result()``: plain JSON, checked field by
field by the parent (``writepath.oracle.schema``). The descriptors a scenario names are virtual:
the scenario's own files get the numbers the model gives them (3, 4, ... in order of first use,
``run.fd_plan``), and every other number is sent to a descriptor the child has checked is closed,
so a call can reach no descriptor of the oracle's (its result pipe, stdout, lock files).
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from writepath.kernel.constants import PAGE_SIZE
from writepath.layout import iov_address
from writepath.mounts import FsPool
from writepath.oracle import libc, tracing
from writepath.oracle.setup import (
    Layout,
    create_files,
    map_regions,
    punch_holes,
    verify_layout,
)
from writepath.results import FileState, pages_from_bytes
from writepath.run import fd_plan, open_flags
from writepath.scenario import CallSpec, Scenario

_WHENCE = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END}

#: Files up to this size are read back whole with pread(); larger ones through
#: SEEK_DATA/SEEK_HOLE, plus a direct read of their last page (see ``read_state``).
DIRECT_READ_LIMIT = 64 << 20
#: Non-zero content shipped to the parent per run, at most; past it, only digests travel.
SHIP_LIMIT = 64 << 20
#: ramfs has no SEEK_DATA: files past this size cannot be read back in the time limit.
RAMFS_READ_LIMIT = 64 << 20

#: The canary: an 8-byte period of bytes no data spec of the catalogue produces by accident
#: (pattern bytes are 1..251, zero is 0). Planted at a page-aligned place, byte k of a page
#: holds CANARY[k % 8], so a file byte at offset f that is canary holds CANARY[f % 8].
CANARY = bytes([0xFC, 0xFD, 0xFE, 0xFF, 0xFF, 0xFE, 0xFD, 0xFC])
#: How much canary to plant at least, and at most (more for scenarios that write more).
CANARY_MIN = 4 << 20
CANARY_MAX = 64 << 20


class ChildError(Exception):
    """The run went wrong in a way that is not the kernel's answer: verdict ``error``."""


@dataclass
class _Call:
    spec: CallSpec
    fd: int
    vec: list[tuple[int, int]]
    arr: Any


def closed_descriptor() -> int:
    """A descriptor number that is not open in this process (fcntl says EBADF)."""
    for fd in range(1000, 1 << 20):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            return fd
    raise ChildError("no closed descriptor number below 2**20")


def open_scenario_files(scenario: Scenario, paths: dict[str, str]) -> dict[int, int]:
    """Open each (file, flags) of the scenario; virtual descriptor -> real descriptor."""
    virtual: dict[int, int] = {}
    for n, (name, flags) in enumerate(fd_plan(scenario)):
        # The access mode bits as the scenario gives them: O_WRONLY|O_RDWR is mode 3, which
        # open(2) accepts and which the kernel then refuses to write with (EBADF).
        bits = open_flags(flags)
        osflags = (bits & 0o3) | (os.O_APPEND if "O_APPEND" in flags else 0) | os.O_CLOEXEC
        virtual[3 + n] = os.open(paths[name], osflags)
    return virtual


def real_descriptor(
    call: CallSpec, virtual: dict[int, int], fds: dict[Any, int], closed: int
) -> int:
    if call.fd is None:
        return fds[(call.file, tuple(sorted(call.flags)))]
    if call.fd < 0:
        return call.fd  # never a descriptor: the kernel says EBADF, as the model does
    return virtual.get(call.fd, closed)


def _prepare_calls(
    scenario: Scenario, layout: Layout, virtual: dict[int, int], closed: int
) -> list[_Call]:
    by_key = {key: virtual[3 + n] for n, key in enumerate(fd_plan(scenario))}
    out: list[_Call] = []
    for c in scenario.calls:
        fd = real_descriptor(c, virtual, by_key, closed)
        vec = [(iov_address(v, layout.bases), v.length % (1 << 64)) for v in c.iov]
        arr = (libc.Iovec * max(1, len(vec)))(*[libc.Iovec(a or None, n) for a, n in vec])
        out.append(_Call(c, fd, vec, arr))
    return out


def _make_call(call: _Call) -> int:
    c, fd, vec = call.spec, call.fd, call.vec
    if c.op == "write":
        return int(libc.libc.write(fd, vec[0][0] or None, vec[0][1]))
    if c.op == "pwrite":
        return int(libc.libc.pwrite(fd, vec[0][0] or None, vec[0][1], c.pos))
    if c.op == "writev":
        return int(libc.libc.writev(fd, call.arr, len(vec)))
    if c.op == "pwritev":
        return int(libc.libc.pwritev(fd, call.arr, len(vec), c.pos))
    return int(libc.libc.lseek(fd, c.pos, _WHENCE[c.whence]))


def read_state(path: str, fstype: str) -> FileState:
    """The file as a reader sees it, not trusting SEEK_DATA at the edges.

    Small files are read whole. Larger ones are walked with SEEK_DATA/SEEK_HOLE, and the last
    page is always read directly besides: 6.18's mapping_seek_hole_data() overflows for the
    very last page index, so a byte at 2**63 - 2 is data that SEEK_DATA does not report.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        pages: dict[int, bytes] = {}

        def read_range(start: int, end: int) -> None:
            pos = start
            while pos < end:
                chunk = os.pread(fd, min(1 << 20, end - pos), pos)
                if not chunk:
                    break
                pages.update(pages_from_bytes(chunk, pos // PAGE_SIZE))
                pos += len(chunk)

        if size <= DIRECT_READ_LIMIT:
            read_range(0, size)
            return FileState(size, pages)
        if fstype == "ramfs":
            raise ChildError("ramfs has no SEEK_DATA: a file this large cannot be read back")
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == 6:  # ENXIO: no data after off (as far as SEEK_DATA knows)
                    break
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            read_range(data - data % PAGE_SIZE, min(hole, size))
            off = max(hole, off + PAGE_SIZE)
        last = (size - 1) // PAGE_SIZE * PAGE_SIZE
        read_range(last, size)
        return FileState(size, pages)
    finally:
        os.close(fd)


def encode_file(state: FileState, budget: list[int]) -> dict[str, Any]:
    """A FileState as JSON: content while the run's budget lasts, else only its digests."""
    size_of_pages = len(state.pages) * PAGE_SIZE if state.pages is not None else 0
    out: dict[str, Any] = {
        "size": state.size,
        "sha256": state.sha256(),
        "digest": state.digest(),
        "stale": [list(r) for r in state.stale],
    }
    if state.pages is not None and size_of_pages <= budget[0]:
        budget[0] -= size_of_pages
        out["pages"] = {
            str(index): base64.b64encode(bytes(page)).decode("ascii")
            for index, page in sorted(state.pages.items())
        }
    else:
        out["pages"] = None
    return out


def plant_canary(directory: str, nbytes: int) -> None:
    """Fill ``nbytes`` of page cache in ``directory`` with the canary and free it again, just
    before the calls.

    Freed folios go back to the page allocator's free lists by order, and a new folio of an
    order is taken from the most recently freed of that order; with the child pinned to one CPU
    a folio the write path allocates next is then one of these. So the canary is written as
    folios of every order a small write asks for (4 KiB to 128 KiB: one pwrite of 2**k pages at
    an aligned offset makes a folio of order k on filesystems with large folios), on the
    filesystem under test, and the file is deleted. Anonymous memory does not serve: freeing it
    also frees zeroed page-table pages last, and those come back first.

    At most half the space free on the filesystem is planted: a journalled filesystem cannot
    reuse the deleted canary's blocks before its running transaction commits, so a canary that
    filled a small image made the scenario's first allocation fail with ENOSPC, and ext4 (-o
    nodelalloc) then truncated its folio and retried in ext4_write_begin(), a path the scenario
    never asked for.
    """
    st = os.statvfs(directory)
    room = st.f_bavail * st.f_frsize // 2
    nbytes = min(nbytes, room)  # spread over every order, not only the first ones
    path = os.path.join(directory, f"canary.{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.unlink(path)
        per_order = max(CANARY_MAX_FOLIO, nbytes // len(CANARY_ORDERS))
        chunk = CANARY * (CANARY_MAX_FOLIO // len(CANARY))
        off = 0
        for order in CANARY_ORDERS:
            size = PAGE_SIZE << order
            for _ in range(per_order // size):
                if off + size > room:
                    return
                try:
                    os.pwrite(fd, chunk[:size], off)
                except OSError:
                    # A small filesystem full (ENOSPC): what was planted still serves, and a
                    # canary never fails the run it only helps to see.
                    return
                off += size
    finally:
        os.close(fd)  # the last reference: the folios are freed here


#: Folio orders the canary is planted in, and the largest of them in bytes.
CANARY_ORDERS = (0, 1, 2, 3, 4, 5)
CANARY_MAX_FOLIO = PAGE_SIZE << max(CANARY_ORDERS)


def canary_ranges(state: FileState) -> list[tuple[int, int]]:
    """The [start, end) byte ranges of the file that hold canary bytes: stale memory."""
    ranges: list[tuple[int, int]] = []
    if state.pages is None:
        return ranges
    page_canary = CANARY * (PAGE_SIZE // len(CANARY))
    for index in sorted(state.pages):
        page = bytes(state.pages[index])
        if max(page) < min(CANARY):  # no byte could be canary
            continue
        base = index * PAGE_SIZE
        k = 0
        while k < PAGE_SIZE:
            if page[k] != page_canary[k]:
                k += 1
                continue
            start = k
            while k < PAGE_SIZE and page[k] == page_canary[k]:
                k += 1
            lo, hi = base + start, min(base + k, state.size)
            if ranges and ranges[-1][1] == lo:
                ranges[-1] = (ranges[-1][0], hi)
            elif hi > lo:
                ranges.append((lo, hi))
    return ranges


def mask_stale(state: FileState, ranges: list[tuple[int, int]]) -> FileState:
    """The file with its stale bytes read as zero and the ranges recorded, as the model says."""
    if not ranges or state.pages is None:
        return state
    pages = {index: bytearray(page) for index, page in state.pages.items()}
    for lo, hi in ranges:
        for index in range(lo // PAGE_SIZE, (hi - 1) // PAGE_SIZE + 1):
            a = max(lo, index * PAGE_SIZE) - index * PAGE_SIZE
            b = min(hi, (index + 1) * PAGE_SIZE) - index * PAGE_SIZE
            pages[index][a:b] = bytes(b - a)
    kept = {index: bytes(p) for index, p in pages.items() if p.count(0) != PAGE_SIZE}
    return FileState(state.size, kept, stale=tuple(ranges))


def canary_budget(scenario: Scenario) -> int:
    written = sum(sum(max(0, v.length) for v in c.iov) for c in scenario.calls if c.op != "lseek")
    return max(CANARY_MIN, min(CANARY_MAX, 2 * written))


def _namer(scenario: Scenario, layout: Layout, paths: dict[str, str]) -> tracing.Namer:
    regions = [
        (r.name, layout.bases[r.name], layout.bases[r.name] + r.length) for r in scenario.regions
    ]
    files: dict[tuple[int, int, int], str] = {}
    for name, path in paths.items():
        major, minor = tracing.superblock_dev(path)
        files[(major, minor, os.stat(path).st_ino)] = name
    return tracing.Namer(regions, files)


def run_child(
    scenario: Scenario,
    pool: FsPool,
    canary_dir: str | None = None,
    trace_instance: str | None = None,
) -> dict[str, Any]:
    """Everything the child does; the JSON-able result (``schema`` checks it). With
    ``canary_dir`` (a tmpfs directory), stale memory in the files is found and reported; with
    ``trace_instance`` (a tracefs instance the parent made), each call's tracepoints."""
    # One CPU: the per-CPU free lists the canary goes to are the ones the calls allocate from.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    prep = create_files(scenario, pool)
    layout = map_regions(scenario, prep)
    virtual = open_scenario_files(scenario, prep.paths)
    closed = closed_descriptor()
    signals: list[str] = []

    def on_sigxfsz(signum: int, frame: object) -> None:
        signals.append("SIGXFSZ")

    handler: Callable[[int, Any], None] = on_sigxfsz
    signal.signal(signal.SIGXFSZ, handler)
    # Every argument is built before the holes are made, so no allocation lands in one.
    calls = _prepare_calls(scenario, layout, virtual, closed)
    results: list[dict[str, Any]] = []
    recorder = None
    if trace_instance is not None:
        namer = _namer(scenario, layout, prep.paths)
        recorder = tracing.Recorder(tracing.TraceInstance(trace_instance))
    if canary_dir is not None:
        # tmpfs first, the scenario's own filesystems last: their folios are reused first.
        canary_bytes = canary_budget(scenario)
        for d in dict.fromkeys([canary_dir, *(os.path.dirname(p) for p in prep.paths.values())]):
            plant_canary(d, canary_bytes)
    # The file size limit comes after the canary (which it would stop), and only the soft one:
    # lowering the hard one could not be undone without CAP_SYS_RESOURCE.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if scenario.rlimit_fsize is not None:
        limit = scenario.rlimit_fsize
        if limit >= 1 << 63:  # no file offset reaches it: the same as RLIM_INFINITY
            limit = resource.RLIM_INFINITY
        if hard != resource.RLIM_INFINITY and (limit == resource.RLIM_INFINITY or limit > hard):
            limit = hard
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    punch_holes(layout)
    for k, call in enumerate(calls):
        del signals[:]
        if recorder is not None:
            recorder.begin(k)
        ctypes.set_errno(0)
        ret = _make_call(call)
        err = ctypes.get_errno() if ret < 0 else 0
        if recorder is not None:
            recorder.end(k)
        results.append({"op": call.spec.op, "ret": ret, "errno": err, "signals": list(signals)})
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    traces = None
    if recorder is not None:
        recorder.stop()
        try:
            recorder.check_complete()
        except tracing.TraceLost as e:
            raise ChildError(f"trace incomplete: {e}") from e
        traces = tracing.split_calls(recorder.lines(), os.getpid(), len(calls), namer)
    problem = verify_layout(layout)
    if problem:
        raise ChildError(problem)
    budget = [SHIP_LIMIT]
    files: dict[str, Any] = {}
    for name, path in prep.paths.items():
        state = read_state(path, prep.fstypes[name])
        if canary_dir is not None:
            state = mask_stale(state, canary_ranges(state))
        files[name] = encode_file(state, budget)
    return {
        "kind": "ok",
        "calls": results,
        "files": files,
        "fstypes": prep.fstypes,
        "traces": traces,
    }
