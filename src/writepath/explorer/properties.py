"""The properties every explored schedule is judged by.

- ``deadlock``, ``livelock``: the run must end.
- ``integrity``: LTP writev07 (``judge.consistency_violations``) on the writer task's calls,
  where it applies: no other task writes or truncates a file the writer writes, and no racing
  call changes the bytes of a source it reads (MADV_DONTNEED of anonymous memory with non-zero
  data would: it then reads zeros).
- ``efault-after-copy``: EFAULT only if nothing was copied: the integrity rule's EFAULT case
  (file and offset untouched), reported under its own name.
- ``folio-locked``: no folio left locked at the end.
- ``cache-coherent``: a clean uptodate folio of a disk filesystem holds the disk's bytes inside
  i_size; no page table entry maps a folio that left the page cache.
- ``i-size``: i_size covers every byte a positional write of the writer reported written, on
  files nobody truncates.
- ``stale-data``: no uninitialized memory inside i_size (the run's own verdict).
- each filesystem's own invariants (``FS_INVARIANTS``, by filesystem name):
  ``journalled-buffer-dirty``: a data=journal buffer never has BH_Dirty (the journal writes
  it: BH_JBDDirty only); the ext4 data=journal bug of 2015 breaks it.
  ``orangefs-write-range``: what 219bf6edd7ef makes orangefs writeback guarantee: it never
  warns (orangefs_writepage_locked()), and no written byte is lost: at the end, inside i_size,
  each uptodate folio holds what the server will hold once the folio's pending write range is
  sent (a clean folio: the server's bytes). The orangefs bug of 2025 breaks the first half.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from writepath.judge import consistency_violations
from writepath.kernel.buffer import BufferHeads
from writepath.kernel.bug import WARN
from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.fs.orangefs import folio_write_range
from writepath.kernel.pagecache import Folio
from writepath.kernel.tracepoints import Event
from writepath.kernel.vfs import Inode
from writepath.results import RunResult
from writepath.run import ModelMachine
from writepath.scenario import MAIN_TASK, Scenario, is_zero_data

WRITE_OPS = ("write", "pwrite", "writev", "pwritev")


def _integrity_applies(scenario: Scenario) -> bool:
    written = {c.file for c in scenario.calls if c.task == MAIN_TASK and c.op in WRITE_OPS}
    sources = {v.region for c in scenario.calls if c.task == MAIN_TASK for v in c.iov}
    for c in scenario.calls:
        if c.task == MAIN_TASK:
            continue
        if c.op in (*WRITE_OPS, "ftruncate") and c.file in written:
            return False
        if c.op == "madvise" and c.region in sources:
            region = scenario.region(c.region)
            if region.kind == "anon" and not is_zero_data(region.data):
                return False
    return True


def _main_only(scenario: Scenario, result: RunResult) -> tuple[Scenario, RunResult]:
    keep = [k for k, c in enumerate(scenario.calls) if c.task == MAIN_TASK]
    s = dataclasses.replace(
        scenario, calls=tuple(scenario.calls[k] for k in keep), expect=None, expect_by_design={}
    )
    r = dataclasses.replace(result, calls=[result.calls[k] for k in keep])
    return s, r


def _folios(machine: ModelMachine) -> list[tuple[str, Folio]]:
    out: list[tuple[str, Folio]] = []
    for name, inode in machine.inodes.items():
        seen: set[int] = set()
        for folio in inode.i_mapping.i_pages.values():
            if id(folio) not in seen:
                seen.add(id(folio))
                out.append((name, folio))
    return out


def check(scenario: Scenario, result: RunResult, machine: ModelMachine) -> list[tuple[str, str]]:
    """(property, detail) for each property this end state violates."""
    problems: list[tuple[str, str]] = []
    if result.verdict in ("deadlock", "livelock", "stale-data"):
        problems.append((result.verdict, result.evidence))
    if result.verdict != "deadlock" and result.verdict != "livelock":
        if _integrity_applies(scenario):
            s, r = _main_only(scenario, result)
            for p in consistency_violations(s, r):
                efault = any(c.errno == "EFAULT" for c in r.calls) and p.startswith("file ")
                problems.append(("efault-after-copy" if efault else "integrity", p))
        for name, folio in _folios(machine):
            if folio.owner is not None:
                problems.append(
                    (
                        "folio-locked",
                        f"{name}: folio {folio.index} locked by task {folio.owner.pid}",
                    )
                )
        problems.extend(_cache_problems(machine))
        problems.extend(_fs_problems(machine))
        problems.extend(_size_problems(scenario, result))
    return problems


def _cache_problems(machine: ModelMachine) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    cached = set()
    for name, folio in _folios(machine):
        cached.add(id(folio.data))
        inode = folio.mapping.host
        if not inode.fs.backed or folio.dirty or not folio.uptodate:
            continue
        for k in range(folio.nr_pages):
            index = folio.index + k
            inside = min(PAGE_SIZE, inode.i_size - (index << PAGE_SHIFT))
            if inside <= 0:
                break
            disk = inode.disk.get(index, bytes(PAGE_SIZE))
            off = k << PAGE_SHIFT
            if folio.data[off : off + inside] != disk[:inside]:
                out.append(("cache-coherent", f"{name}: clean page {index} differs from the disk"))
    for vpn, (buf, _) in machine.task.mm.pte.items():
        if type(buf).__name__ == "FolioData" and id(buf) not in cached:
            out.append(("cache-coherent", f"user page {vpn:#x} maps a folio no longer cached"))
    return out


def _size_problems(scenario: Scenario, result: RunResult) -> list[tuple[str, str]]:
    truncated = {c.file for c in scenario.calls if c.op == "ftruncate"}
    out: list[tuple[str, str]] = []
    for k, (call, res) in enumerate(zip(scenario.calls, result.calls, strict=True)):
        if call.op not in ("pwrite", "pwritev") or call.file in truncated:
            continue
        if "O_APPEND" in call.flags or res.ret is None or res.errno is not None:
            continue
        size = result.files[call.file].size
        if size < call.pos + res.ret:
            out.append(("i-size", f"call[{k}] wrote {res.ret} at {call.pos} but i_size is {size}"))
    return out


def _file_folios(inode: Inode) -> list[Folio]:
    seen: dict[int, Folio] = {}
    for folio in inode.i_mapping.i_pages.values():
        seen.setdefault(id(folio), folio)
    return list(seen.values())


def journalled_buffers_clean(name: str, inode: Inode, events: list[Event]) -> list[tuple[str, str]]:
    """data=journal: no buffer of the file ever has BH_Dirty. The journal owns these blocks
    (BH_JBDDirty); writeback would write a plain dirty one in place, around the journal. Seen
    either when jbd2 spots it (its warn_dirty_buffer() warning in the log) or at the end, on a
    buffer still dirty."""
    out: list[tuple[str, str]] = []
    for kind, _pid, where, what in events:
        if kind == WARN and where == "warn_dirty_buffer" and str(what).startswith(f"{name}:"):
            out.append(("journalled-buffer-dirty", str(what)))
    for folio in _file_folios(inode):
        bhs = folio.private
        if not isinstance(bhs, BufferHeads):
            continue
        for k, dirty in enumerate(bhs.dirty):
            if dirty:
                out.append(
                    (
                        "journalled-buffer-dirty",
                        f"{name}: block {folio.index + k} of a data=journal file has BH_Dirty",
                    )
                )
    return out


def orangefs_write_ranges_inside(
    name: str, inode: Inode, events: list[Event]
) -> list[tuple[str, str]]:
    """orangefs, from what 219bf6edd7ef guarantees: no warning from orangefs_writepage_locked()
    (before the fix, a range that does not start inside the file warns there), and no written
    byte lost. For the second: inside i_size, the server's blocks with each dirty folio's
    pending write range laid over them (what writeback will send there) equal every uptodate
    folio's bytes. Bytes a write put outside the range the folio keeps would never reach the
    server; a range sent past i_size (the fixed writeback sends a range that starts at EOF
    whole) lands outside the file and is not judged."""
    out: list[tuple[str, str]] = []
    for kind, _pid, where, what in events:
        if (
            kind == WARN
            and where == "orangefs_writepage_locked"
            and str(what).startswith(f"{inode.name}:")
        ):
            out.append(("orangefs-write-range", str(what)))
    size = inode.i_size
    for folio in _file_folios(inode):
        start = folio.index << PAGE_SHIFT
        inside = min(PAGE_SIZE, size - start)
        if inside <= 0 or not folio.uptodate:
            continue
        server = bytearray(inode.disk.get(folio.index, bytes(PAGE_SIZE))[:inside])
        wr = folio_write_range(folio)
        if folio.dirty and wr is not None:
            lo = max(wr.pos, start) - start
            hi = min(wr.pos + wr.len, start + inside) - start
            if lo < hi:
                server[lo:hi] = folio.data[lo:hi]
        if bytes(folio.data[:inside]) != bytes(server):
            lost = next(k for k in range(inside) if folio.data[k] != server[k])
            out.append(
                (
                    "orangefs-write-range",
                    f"{name}: byte {start + lost} of the file would never reach the server "
                    f"(folio {folio.index}, write range "
                    f"{'none' if wr is None else f'[{wr.pos}, {wr.pos + wr.len})'})",
                )
            )
    return out


#: Invariants of one filesystem's own state, by filesystem name: (file name, inode, the run's
#: event log) -> problems.
FS_INVARIANTS: dict[str, Callable[[str, Inode, list[Event]], list[tuple[str, str]]]] = {
    "ext4-journal": journalled_buffers_clean,
    "ext4-journal-2015": journalled_buffers_clean,
    "orangefs": orangefs_write_ranges_inside,
    "orangefs-2025": orangefs_write_ranges_inside,
}


def _fs_problems(machine: ModelMachine) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, inode in machine.inodes.items():
        invariant = FS_INVARIANTS.get(inode.fs.name)
        if invariant is not None:
            out.extend(invariant(name, inode, machine.kernel.events))
    return out
