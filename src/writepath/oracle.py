"""Replay a scenario on the real kernel of this machine.

Everything happens in a forked child with a time limit, in scratch directories (see
``writepath.mounts``), so a signal, a hang or a changed rlimit costs nothing: they come back as
results (verdict ``timeout`` or ``signal``), not as crashes. Setup is checked, not assumed: page
cache residency with mincore(2) after fsync + POSIX_FADV_DONTNEED, page-table residency of every
region page through /proc/self/pagemap. What this machine cannot set up is a ``skip`` with the
reason. The child never reads memory it made unreadable; the intended source bytes are the
scenario's data specs, which the judge uses, not a read-back of the regions.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import mmap
import os
import pickle
import platform
import resource
import select
import signal
import time
from dataclasses import dataclass
from typing import Any

from writepath.kernel.constants import PAGE_SIZE
from writepath.layout import iov_address, region_bases, total_length
from writepath.mounts import FsPool, Unavailable, fs_type_of
from writepath.results import CallResult, FileState, RunResult, pages_from_bytes
from writepath.run import fd_plan, open_flags
from writepath.scenario import Scenario, fill

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_libc.write.restype = ctypes.c_ssize_t
_libc.pwrite.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
_libc.pwrite.restype = ctypes.c_ssize_t


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc.writev.argtypes = [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_int]
_libc.writev.restype = ctypes.c_ssize_t
_libc.pwritev.argtypes = [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_int, ctypes.c_long]
_libc.pwritev.restype = ctypes.c_ssize_t
_libc.lseek.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_int]
_libc.lseek.restype = ctypes.c_long

MAP_FAILED = ctypes.c_void_p(-1).value
_PROT = {"r": mmap.PROT_READ, "rw": mmap.PROT_READ | mmap.PROT_WRITE, "none": 0}
_WHENCE = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END}


#: ramfs files are read back whole (no SEEK_DATA/SEEK_HOLE); writes beyond this are skipped.
_RAMFS_READ_LIMIT = 64 << 20


class SetupError(Exception):
    """The scenario cannot be set up here as it asks: the run is skipped with this reason."""


@dataclass
class _Prepared:
    paths: dict[str, str]
    fstypes: dict[str, str]


def _check(ret: int | None, what: str) -> int:
    if ret is None or ret == MAP_FAILED or (isinstance(ret, int) and ret < 0):
        e = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(e)}")
    return int(ret)


def _mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    got = _libc.mmap(addr or None, length, prot, flags, fd, offset)
    return _check(got, "mmap")


def _create_files(scenario: Scenario, pool: FsPool) -> _Prepared:
    paths: dict[str, str] = {}
    fstypes: dict[str, str] = {}
    for f in scenario.files:
        try:
            d = pool.directory(f.fs)
        except Unavailable as e:
            raise SetupError(f"{f.fs}: {e}") from e
        fstypes[f.name] = fs_type_of(d)
        path = os.path.join(d, f"{scenario.name}.{f.name}")
        paths[f.name] = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if not f.sparse:
                chunk = 1 << 20
                for start in range(0, f.size, chunk):
                    os.pwrite(fd, fill(f.data, min(chunk, f.size - start), start), start)
            os.ftruncate(fd, f.size)
            if not f.cached and f.size:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if _resident_pages(fd, f.size):
                    raise SetupError(f"{f.name}: pages stay in the page cache after DONTNEED")
        finally:
            os.close(fd)
    return _Prepared(paths, fstypes)


def _resident_pages(fd: int, size: int) -> int:
    """How many of the file's pages are in the page cache (mincore(2))."""
    npages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    addr = _mmap(0, npages * PAGE_SIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    vec = ctypes.create_string_buffer(npages)
    try:
        _check(_libc.mincore(addr, npages * PAGE_SIZE, vec), "mincore")
    finally:
        _libc.munmap(addr, npages * PAGE_SIZE)
    return sum(b & 1 for b in vec.raw)


def _present(pagemap: int, addr: int) -> bool:
    entry = os.pread(pagemap, 8, (addr // PAGE_SIZE) * 8)
    return bool(int.from_bytes(entry, "little") >> 63)


def _map_regions(scenario: Scenario, prep: _Prepared) -> dict[str, int]:
    """Reserve one range and lay every region at its place inside it."""
    length = total_length(scenario.regions)
    if not length:
        return {}
    base = _mmap(0, length, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)  # MAP_NORESERVE
    bases = region_bases(scenario.regions, base)
    fixed = 0x10  # MAP_FIXED
    for r in scenario.regions:
        start = bases[r.name]
        if r.kind == "hole":
            _check(_libc.munmap(start, r.length), "munmap")
        elif r.kind == "anon":
            prot = _PROT[r.prot] | (mmap.PROT_WRITE if r.touched else 0)
            _mmap(start, r.length, prot, fixed | mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            if r.touched:
                ctypes.memmove(start, fill(r.data, r.length), r.length)
                _check(_libc.mprotect(start, r.length, _PROT[r.prot]), "mprotect")
        else:
            assert r.file is not None
            fd = os.open(prep.paths[r.file], os.O_RDWR)
            flags = fixed | (mmap.MAP_SHARED if r.shared else mmap.MAP_PRIVATE)
            try:
                _mmap(start, r.length, _PROT[r.prot], flags, fd, r.offset)
            finally:
                os.close(fd)
            if r.touched:
                for k in range(r.pages):
                    ctypes.string_at(start + k * PAGE_SIZE, 1)
    pagemap = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        for r in scenario.regions:
            if r.kind == "hole":
                continue
            for k in range(r.pages):
                if _present(pagemap, bases[r.name] + k * PAGE_SIZE) != r.touched:
                    state = "not present" if r.touched else "present"
                    raise SetupError(f"region {r.name} page {k} is {state} in the page table")
    finally:
        os.close(pagemap)
    return bases


def _read_state(path: str) -> FileState:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pages: dict[int, bytes] = {}
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno_mod.ENXIO:
                    break
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            start = data - data % PAGE_SIZE
            pos = start
            while pos < min(hole, size):
                chunk = os.pread(fd, min(1 << 20, hole - pos), pos)
                if not chunk:
                    break
                pages.update(pages_from_bytes(chunk, pos // PAGE_SIZE))
                pos += len(chunk)
            off = max(hole, off + PAGE_SIZE)
        return FileState(size, pages)
    finally:
        os.close(fd)


def _child(scenario: Scenario, pool: FsPool) -> dict[str, Any]:
    prep = _create_files(scenario, pool)
    bases = _map_regions(scenario, prep)
    fds: dict[tuple[str, tuple[str, ...]], int] = {}
    for name, flags in fd_plan(scenario):
        bits = open_flags(flags)
        access = {0o0: os.O_RDONLY, 0o1: os.O_WRONLY, 0o2: os.O_RDWR}[bits & 0o3]
        osflags = access | (os.O_APPEND if "O_APPEND" in flags else 0)
        fds[(name, flags)] = os.open(prep.paths[name], osflags)
    signals: list[str] = []
    signal.signal(signal.SIGXFSZ, lambda signum, frame: signals.append("SIGXFSZ"))
    # Only the soft limit: lowering the hard one could not be undone without CAP_SYS_RESOURCE.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if scenario.rlimit_fsize is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (scenario.rlimit_fsize, hard))
    # Build every argument before the first call, so nothing allocates into a hole meanwhile.
    prepared = []
    for c in scenario.calls:
        fd = c.fd if c.fd is not None else fds[(c.file, tuple(sorted(c.flags)))]
        vec = [(iov_address(v, bases), v.length) for v in c.iov]
        arr = (Iovec * max(1, len(vec)))(*[Iovec(a or None, n % (1 << 64)) for a, n in vec])
        prepared.append((c, fd, vec, arr))
    results: list[tuple[str, int, int, tuple[str, ...]]] = []
    for c, fd, vec, arr in prepared:
        del signals[:]
        ctypes.set_errno(0)
        if c.op == "write":
            ret = _libc.write(fd, vec[0][0] or None, vec[0][1])
        elif c.op == "pwrite":
            ret = _libc.pwrite(fd, vec[0][0] or None, vec[0][1], c.pos)
        elif c.op == "writev":
            ret = _libc.writev(fd, arr, len(vec))
        elif c.op == "pwritev":
            ret = _libc.pwritev(fd, arr, len(vec), c.pos)
        else:
            ret = _libc.lseek(fd, c.pos, _WHENCE[c.whence])
        err = ctypes.get_errno() if ret < 0 else 0
        results.append((c.op, ret, err, tuple(signals)))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    files = {name: _read_state(path) for name, path in prep.paths.items()}
    return {"calls": results, "files": files, "fstypes": prep.fstypes}


def run_oracle(
    scenario: Scenario,
    directory: str | None = None,
    timeout: float = 10.0,
    pool: FsPool | None = None,
) -> RunResult:
    """Run ``scenario`` on this machine's kernel in a child process; a RunResult with design
    ``kernel``. Verdicts: ``ok``, ``skip`` (cannot be set up here), ``timeout``, ``signal``."""
    if pool is None:
        with FsPool(directory) as own:
            return run_oracle(scenario, directory, timeout, own)
    for f in scenario.files:  # make the directories in the parent, once
        try:
            pool.directory(f.fs)
        except Unavailable as e:
            return _result(scenario, "skip", f"{f.fs}: {e}")
    if any(f.fs == "ramfs" for f in scenario.files) and any(
        c.pos > _RAMFS_READ_LIMIT for c in scenario.calls
    ):
        return _result(
            scenario,
            "skip",
            "ramfs has no SEEK_HOLE: a file this sparse cannot be read back in the time limit",
        )
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(rd)
        try:
            payload: Any = ("ok", _child(scenario, pool))
        except SetupError as e:
            payload = ("skip", str(e))
        except BaseException as e:
            payload = ("error", f"{type(e).__name__}: {e}")
        data = pickle.dumps(payload)
        with os.fdopen(wr, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(wr)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    with os.fdopen(rd, "rb") as inp:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([inp], [], [], left)
            if ready:
                chunk = os.read(inp.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return _result(scenario, "timeout", f"no answer within {timeout} s: killed")
    if os.WIFSIGNALED(status):
        return _result(scenario, "signal", f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
    kind, body = pickle.loads(b"".join(chunks))
    if kind != "ok":
        return _result(scenario, "skip" if kind == "skip" else "error", body)
    calls = [
        CallResult.from_kernel_ret(op, ret if ret >= 0 else -err, sigs)
        for op, ret, err, sigs in body["calls"]
    ]
    result = RunResult(scenario.name, "kernel", "ok", calls, body["files"])
    result.extra = {"kernel": platform.release(), "fs": body["fstypes"]}
    return result


def _result(scenario: Scenario, verdict: str, evidence: str) -> RunResult:
    r = RunResult(scenario.name, "kernel", verdict, [], {}, evidence)
    r.extra = {"kernel": platform.release()}
    return r
