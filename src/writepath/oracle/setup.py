"""Set a scenario up on the real kernel, inside the oracle's child process.

Files are created on the filesystems the scenario names; regions are laid out from
``layout.MODEL_BASE`` exactly as in the model, inside one reservation that also holds a guard page
before the first region and after the last. The guard pages stay mapped PROT_NONE for the whole
run, so nothing of the oracle's own (its heap, a library, a thread stack) can ever be mapped next
to the regions: an iov that runs past the last region reads nothing, as in the model, where
nothing is mapped there. Hole regions stay reserved until ``punch_holes()``, which the child calls
after every argument of every call has been built, and ``verify_layout()`` checks afterwards that
nothing was mapped into a hole meanwhile.

Setup is checked, not assumed: page-cache residency with mincore(2) after fsync +
POSIX_FADV_DONTNEED, page-table residency of every region page through /proc/self/pagemap.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field

from writepath.kernel.constants import PAGE_SIZE
from writepath.layout import GUARD_PAGES, MODEL_BASE, region_bases, total_length
from writepath.mounts import FsPool, Unavailable, fs_type_of
from writepath.oracle import libc
from writepath.scenario import Scenario, fill

_PROT = {"r": libc.PROT_READ, "rw": libc.PROT_READ | libc.PROT_WRITE, "none": libc.PROT_NONE}
#: Initial contents are written in pieces of this size, so a large file costs no large buffer.
_FILL_CHUNK = 1 << 20


class SetupError(Exception):
    """The scenario cannot be set up here as it asks: the run is skipped with this reason."""


@dataclass
class Prepared:
    """The scenario's files on disk: path and real filesystem type per file name."""

    paths: dict[str, str]
    fstypes: dict[str, str]


@dataclass
class Layout:
    """Where the regions are: the reservation (guards included) and the holes to punch."""

    start: int = 0
    length: int = 0
    bases: dict[str, int] = field(default_factory=dict)
    holes: list[tuple[int, int]] = field(default_factory=list)


def create_files(scenario: Scenario, pool: FsPool) -> Prepared:
    paths: dict[str, str] = {}
    fstypes: dict[str, str] = {}
    for f in scenario.files:
        try:
            d = pool.directory(f.fs)
        except Unavailable as e:
            raise SetupError(f"{f.fs}: {e}") from e
        fstypes[f.name] = fs_type_of(d)
        # Names are validated single path components (scenario.py); the prefix keeps two
        # scenarios apart in one pool directory.
        path = os.path.join(d, f"{scenario.name}.{f.name}")
        paths[f.name] = path
        fd = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        try:
            if not f.sparse:
                for start in range(0, f.size, _FILL_CHUNK):
                    os.pwrite(fd, fill(f.data, min(_FILL_CHUNK, f.size - start), start), start)
            os.ftruncate(fd, f.size)
            if not f.cached and f.size:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if resident_pages(fd, f.size):
                    raise SetupError(f"{f.name}: pages stay in the page cache after DONTNEED")
        finally:
            os.close(fd)
    return Prepared(paths, fstypes)


def resident_pages(fd: int, size: int) -> int:
    """How many of the file's pages are in the page cache (mincore(2))."""
    npages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    addr = libc.mmap(0, npages * PAGE_SIZE, libc.PROT_READ, libc.MAP_SHARED, fd, 0)
    vec = ctypes.create_string_buffer(npages)
    try:
        libc.check(libc.libc.mincore(addr, npages * PAGE_SIZE, vec), "mincore")
    finally:
        libc.munmap(addr, npages * PAGE_SIZE)
    return sum(b & 1 for b in vec.raw)


def _present(pagemap: int, addr: int) -> bool:
    entry = os.pread(pagemap, 8, (addr // PAGE_SIZE) * 8)
    return bool(int.from_bytes(entry, "little") >> 63)


def map_regions(scenario: Scenario, prep: Prepared) -> Layout:
    """Reserve the range (guards included) at MODEL_BASE and lay every region at its place."""
    length = total_length(scenario.regions)
    if not length:
        return Layout()
    guard = GUARD_PAGES * PAGE_SIZE
    start = MODEL_BASE - guard
    flags = libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_NORESERVE | libc.MAP_FIXED_NOREPLACE
    try:
        got = libc.mmap(start, length + 2 * guard, libc.PROT_NONE, flags)
    except libc.LibcError as e:
        raise SetupError(f"cannot reserve the region range at {MODEL_BASE:#x}: {e}") from e
    if got != start:  # a kernel without MAP_FIXED_NOREPLACE treats it as a hint
        libc.munmap(got, length + 2 * guard)
        raise SetupError(f"the region range at {MODEL_BASE:#x} is in use")
    layout = Layout(start, length + 2 * guard, region_bases(scenario.regions, MODEL_BASE))
    fixed = libc.MAP_FIXED
    for r in scenario.regions:
        base = layout.bases[r.name]
        if r.kind == "hole":
            layout.holes.append((base, r.length))
        elif r.kind == "anon":
            prot = _PROT[r.prot] | (libc.PROT_WRITE if r.touched else 0)
            libc.mmap(base, r.length, prot, fixed | libc.MAP_PRIVATE | libc.MAP_ANONYMOUS)
            if r.touched:
                for off in range(0, r.length, _FILL_CHUNK):
                    n = min(_FILL_CHUNK, r.length - off)
                    ctypes.memmove(base + off, fill(r.data, n, off), n)
                libc.mprotect(base, r.length, _PROT[r.prot])
        else:
            assert r.file is not None
            fd = os.open(prep.paths[r.file], os.O_RDWR | os.O_CLOEXEC)
            share = libc.MAP_SHARED if r.shared else libc.MAP_PRIVATE
            try:
                libc.mmap(base, r.length, _PROT[r.prot], fixed | share, fd, r.offset)
            finally:
                os.close(fd)
            if r.touched:
                for k in range(r.pages):
                    ctypes.string_at(base + k * PAGE_SIZE, 1)
    pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for r in scenario.regions:
            if r.kind == "hole":
                continue
            for k in range(r.pages):
                if _present(pagemap, layout.bases[r.name] + k * PAGE_SIZE) != r.touched:
                    state = "not present" if r.touched else "present"
                    raise SetupError(f"region {r.name} page {k} is {state} in the page table")
    finally:
        os.close(pagemap)
    return layout


def punch_holes(layout: Layout) -> None:
    """Unmap the hole regions: the last thing before the calls."""
    for start, length in layout.holes:
        libc.munmap(start, length)


def _maps() -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, parts[1]))
    return out


def verify_layout(layout: Layout) -> str | None:
    """What went wrong with the reservation during the run, or None: a hole that something got
    mapped into, or a guard page that is no longer PROT_NONE."""
    if not layout.length:
        return None
    maps = _maps()
    for start, length in layout.holes:
        for lo, hi, _ in maps:
            if lo < start + length and hi > start:
                return f"something was mapped into a hole at {max(lo, start):#x}"
    guard = GUARD_PAGES * PAGE_SIZE
    for g in (layout.start, layout.start + layout.length - guard):
        covering = [perms for lo, hi, perms in maps if lo <= g and hi >= g + guard]
        if not covering or not covering[0].startswith("---"):
            return f"guard page at {g:#x} is not reserved PROT_NONE"
    return None
