"""The page cache: folios, address_space, the folio lock and folio lookup.

Follows include/linux/pagemap.h, include/linux/page-flags.h and mm/filemap.c of v6.14–v6.18
(``__filemap_get_folio``, ``folio_lock``/``__folio_lock``, ``filemap_fault``).

Simplifications, each because nothing the write path returns depends on it:
- no reference counts (``folio_put`` is a no-op) and no LRU, reclaim or writeback;
- ``i_pages`` is a dict keyed by every page index a folio covers, the way the xarray stores a
  multi-index entry; memory grows with folios touched, never with file offsets;
- a fault reads an order-0 folio (readahead would build larger ones).

Uninitialized memory. The page allocator does not clear the pages of a new page-cache folio
(``filemap_alloc_folio()`` allocates without __GFP_ZERO): whatever a filesystem does not zero or
fill keeps the bytes of whoever used that memory before. The model keeps, per folio, the sorted
disjoint ``[start, end)`` byte ranges still uninitialized (``Folio.uninit``); every zeroing, every
copy into the folio and every read from disk clears what it writes, and a copy *from* a user
mapping of a folio carries those ranges along (``writepath.kernel.uaccess``). ``Folio.data`` holds
zeros where memory is uninitialized, so a reader of ``data`` sees the masked value, and
``stale_ranges()`` says where that value is not what the kernel would show. A folio built
directly with ``Folio(...)`` (a file that already existed before the run) is fully initialized.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.task import Sleeps, Task, wait_for_unlock
from writepath.kernel.tracepoints import ENTER, EXIT, FOLIO_LOCK, FOLIO_UNLOCK

if TYPE_CHECKING:
    from writepath.kernel.vfs import File, Inode

_C = TypeVar("_C")

try:
    # Read only by mypyc (setup.py, WRITEPATH_MYPYC=1), which brings mypy_extensions along; a
    # plain install, and the lab's guest (standard library only), take the no-op below.
    from mypy_extensions import mypyc_attr
except ImportError:

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[_C], _C]:
        return lambda cls: cls


# fgf_t flags (include/linux/pagemap.h)
FGP_ACCESSED: Final = 1 << 0
FGP_LOCK: Final = 1 << 1
FGP_CREAT: Final = 1 << 2
FGP_WRITE: Final = 1 << 3
FGP_NOFS: Final = 1 << 4
FGP_STABLE: Final = 1 << 7
FGP_WRITEBEGIN: Final = FGP_LOCK | FGP_WRITE | FGP_CREAT | FGP_STABLE


def fgf_set_order(size: int) -> int:
    """The folio order a write of ``size`` bytes asks for: floor(log2(size)) - PAGE_SHIFT."""
    shift = size.bit_length() - 1 if size > 0 else 0
    return shift - PAGE_SHIFT if shift > PAGE_SHIFT else 0


Ranges = list[tuple[int, int]]


def ranges_clear(ranges: Ranges, start: int, end: int) -> None:
    """Remove [start, end) from sorted disjoint ``ranges``, in place."""
    if not ranges or end <= start:
        return
    out: Ranges = []
    for s, e in ranges:
        if e <= start or s >= end:
            out.append((s, e))
            continue
        if s < start:
            out.append((s, start))
        if e > end:
            out.append((end, e))
    ranges[:] = out


def ranges_add(ranges: Ranges, start: int, end: int) -> None:
    """Add [start, end) to sorted disjoint ``ranges``, merging neighbours, in place."""
    if end <= start:
        return
    i = bisect.bisect_left(ranges, (start, start))
    if i > 0 and ranges[i - 1][1] >= start:
        i -= 1
    j = i
    while j < len(ranges) and ranges[j][0] <= end:
        start = min(start, ranges[j][0])
        end = max(end, ranges[j][1])
        j += 1
    ranges[i:j] = [(start, end)]


def ranges_within(ranges: Ranges, start: int, end: int) -> Ranges:
    """The parts of ``ranges`` inside [start, end)."""
    out: Ranges = []
    for s, e in ranges:
        if e <= start:
            continue
        if s >= end:
            break
        out.append((max(s, start), min(e, end)))
    return out


# mypyc cannot compile a subclass of bytearray into a native class; it stays a Python class.
@mypyc_attr(native_class=False)
class FolioData(bytearray):
    """The memory of a folio's pages. It shares its folio's list of uninitialized ranges, the
    way the kernel finds the folio (and so its state) of any direct-map address
    (``virt_to_folio()``): a copy whose source is a user mapping of a folio (the page table maps
    the folio's own memory) learns which source bytes are uninitialized without the page table
    keeping anything extra. It holds the list, not the folio, so that no reference cycle keeps a
    dropped folio alive."""

    __slots__ = ("uninit",)
    uninit: Ranges


class Folio:
    """struct folio: ``1 << order`` pages of one file, with their flags and the folio lock.

    ``owner`` is the task holding the folio lock (PG_locked with an owner, as lockdep would see
    it). ``private`` is ``folio->private``: the filesystem's per-block state, an
    ``IomapFolioState`` (fs/iomap) or the ``BufferHeads`` of fs/buffer.c, or None. ``uninit``
    lists the byte ranges of the folio whose memory was never initialized.
    """

    __slots__ = (
        "data",
        "dirty",
        "index",
        "mapping",
        "nr_pages",
        "order",
        "owner",
        "private",
        "uninit",
        "uptodate",
    )

    def __init__(self, mapping: AddressSpace, index: int, order: int) -> None:
        self.mapping = mapping
        self.index = index
        self.order = order
        self.nr_pages = 1 << order
        self.data = FolioData(PAGE_SIZE << order)
        self.uptodate = False
        self.dirty = False
        self.owner: Task | None = None
        self.private: BlockState | None = None
        # One list, shared with ``data`` and only ever changed in place.
        self.uninit: Ranges = []
        self.data.uninit = self.uninit

    @property
    def bh_uptodate(self) -> list[bool] | None:
        """Per-block (per-page) uptodate state, whichever structure keeps it; None if the folio
        has none. Read-only: kept for callers outside the kernel model."""
        return self.private.uptodate if self.private is not None else None

    def lock_name(self) -> str:
        return f"folio_lock({self.mapping.host.name}:{self.index})"

    def __repr__(self) -> str:
        return f"<folio {self.mapping.host.name}:{self.index} order {self.order}>"


def folio_size(folio: Folio) -> int:
    return PAGE_SIZE << folio.order


def folio_pos(folio: Folio) -> int:
    return folio.index << PAGE_SHIFT


def offset_in_folio(folio: Folio, pos: int) -> int:
    return pos & ((PAGE_SIZE << folio.order) - 1)


class BlockState:
    """What ``folio->private`` points to for a filesystem with per-block state: at least a
    per-block uptodate flag (blocks are one page in this model)."""

    __slots__ = ("uptodate",)

    def __init__(self, uptodate: list[bool]) -> None:
        self.uptodate = uptodate


def filemap_alloc_folio(mapping: AddressSpace, index: int, order: int) -> Folio:
    """A new page-cache folio from the page allocator (mm/filemap.c, v6.18): not cleared, so
    every byte of it is uninitialized until someone writes it."""
    folio = Folio(mapping, index, order)
    folio.uninit.append((0, PAGE_SIZE << order))
    return folio


def folio_initialized(folio: Folio, start: int, end: int) -> None:
    """Bytes [start, end) of the folio were written (zeroed, copied into, read from disk)."""
    if folio.uninit:
        ranges_clear(folio.uninit, start, end)


def folio_zero_segments(folio: Folio, s1: int, e1: int, s2: int, e2: int) -> None:
    """Zero [s1, e1) and [s2, e2) of the folio (include/linux/highmem.h)."""
    data = folio.data
    if e1 > s1:
        data[s1:e1] = bytes(e1 - s1)
        folio_initialized(folio, s1, e1)
    if e2 > s2:
        data[s2:e2] = bytes(e2 - s2)
        folio_initialized(folio, s2, e2)


def folio_zero_range(folio: Folio, start: int, length: int) -> None:
    folio_zero_segments(folio, start, start + length, 0, 0)


def folio_mark_uptodate(task: Task, folio: Folio) -> None:
    if not folio.uptodate:
        folio.uptodate = True
        task.kernel.generation += 1


def folio_mark_dirty(task: Task, folio: Folio) -> bool:
    """folio_mark_dirty() (mm/page-writeback.c, v6.18): ``a_ops->dirty_folio``, which for the
    filesystems here sets PG_dirty (noop_dirty_folio() of shmem and ramfs, filemap_dirty_folio()
    behind iomap and buffer heads, which also account the dirty page). True if the folio was
    clean. Emits ``folio_mark_dirty`` enter/exit (b: folio index, then the return value)."""
    emit = task.emit
    emit((ENTER, task.pid, "folio_mark_dirty", folio.index))
    was_clean = not folio.dirty
    folio.dirty = True
    emit((EXIT, task.pid, "folio_mark_dirty", was_clean))
    return was_clean


def balance_dirty_pages_ratelimited_flags(task: Task, mapping: AddressSpace, flags: int = 0) -> int:
    """balance_dirty_pages_ratelimited_flags() (mm/page-writeback.c, v6.18): the per-CPU
    ratelimit of dirty pages, which calls balance_dirty_pages() (and may sleep there) once a
    task dirtied enough. The model has no writeback and no dirty limits, so the throttle never
    engages; it is here as the event the cost model prices. Returns 0 (no BDP_ASYNC -EAGAIN)."""
    task.emit((tp.ENTER, task.pid, "balance_dirty_pages_ratelimited_flags", flags))
    task.emit((tp.EXIT, task.pid, "balance_dirty_pages_ratelimited_flags", 0))
    return 0


def balance_dirty_pages_ratelimited(task: Task, mapping: AddressSpace) -> None:
    """balance_dirty_pages_ratelimited() (mm/page-writeback.c, v6.18), called by
    generic_perform_write() after every pass that did not break out of the loop or retry:
    ``balance_dirty_pages_ratelimited_flags(mapping, 0)``, emitted under the caller's name (the
    call is one event, not two). See balance_dirty_pages_ratelimited_flags() for what the model
    leaves out."""
    emit = task.emit
    emit((ENTER, task.pid, "balance_dirty_pages_ratelimited", mapping.host.i_ino))
    emit((EXIT, task.pid, "balance_dirty_pages_ratelimited", None))


def folio_trylock(task: Task, folio: Folio) -> bool:
    """Take PG_locked if it is free (include/linux/pagemap.h)."""
    if folio.owner is None:
        folio.owner = task
        task.emit((tp.FOLIO_LOCK, task.pid, folio.index, folio.mapping.host.i_ino))
        return True
    return False


def __folio_lock(task: Task, folio: Folio) -> Sleeps[None]:
    """Sleep until the folio lock is free, then take it (mm/filemap.c).

    A task that waits for a folio lock it holds itself never wakes: the scheduler reports that as
    a deadlock whose cycle is this one task.
    """
    holder = folio.owner
    assert holder is not None
    task.emit((tp.LOCK_WAIT, task.pid, folio.lock_name(), holder.pid))
    yield from wait_for_unlock(folio)
    folio.owner = task
    task.emit((tp.FOLIO_LOCK, task.pid, folio.index, folio.mapping.host.i_ino))


def folio_lock(task: Task, folio: Folio) -> Sleeps[None]:
    """folio_lock(): the trylock fast path, else sleep in __folio_lock()."""
    if not folio_trylock(task, folio):
        yield from __folio_lock(task, folio)


def folio_unlock(task: Task, folio: Folio) -> None:
    if folio.owner is not task:
        raise AssertionError(f"{task} unlocks {folio} held by {folio.owner}")
    folio.owner = None
    task.emit((FOLIO_UNLOCK, task.pid, folio.index, folio.mapping.host.i_ino))


WriteBegin = Callable[
    ["Task", "File", "AddressSpace", int, int],
    "Sleeps[tuple[int, Folio | None, object]]",
]
WriteEnd = Callable[["Task", "File", "AddressSpace", int, int, int, Folio, object], int]
ReadFolio = Callable[["Task", Folio], int]


@dataclass(frozen=True)
class AddressSpaceOperations:
    """struct address_space_operations, the part the buffered write path calls.

    Contract (Documentation/filesystems/vfs.rst, "write_begin"/"write_end"):
    - ``write_begin(task, file, mapping, pos, len)`` is called with the inode locked. It returns
      ``(0, folio, fsdata)`` with the folio that covers ``pos`` locked by ``task`` and ready to
      take ``len`` bytes at ``pos`` (any part the copy will not overwrite already uptodate or
      zeroed), or ``(-errno, None, None)``. It may sleep.
    - ``write_end(task, file, mapping, pos, len, copied, folio, fsdata)`` is called with the folio
      still locked after ``copied`` bytes (possibly fewer than ``len``, possibly none) were copied
      into it. It unlocks the folio and returns how many bytes it accepted: ``copied``, or 0 for a
      filesystem that cannot keep a short copy (the caller then retries). It updates i_size. It
      does not sleep in this model.
    - Either is None for a filesystem whose buffered writes do not go through them (iomap's
      and btrfs's leave them NULL); ``write_ops()`` gives the pair to a loop that calls them.
    - ``read_folio(task, folio)`` fills a locked folio that is not uptodate from the backing store
      and marks it uptodate; the folio stays locked (the caller unlocks it).
    """

    name: str
    write_begin: WriteBegin | None
    write_end: WriteEnd | None
    read_folio: ReadFolio


def write_ops(a_ops: AddressSpaceOperations) -> tuple[WriteBegin, WriteEnd]:
    """``a_ops->write_begin`` and ``->write_end`` for a write loop that calls them. The C calls
    them unchecked (a filesystem without them never reaches generic_perform_write()); here a
    loop handed such a filesystem fails at once, naming it."""
    begin, end = a_ops.write_begin, a_ops.write_end
    if begin is None or end is None:
        raise TypeError(f"{a_ops.name} has no ->write_begin/->write_end")
    return begin, end


class AddressSpace:
    """struct address_space: the page cache of one inode."""

    __slots__ = ("a_ops", "host", "i_mmap_writable", "i_pages", "max_order")

    def __init__(self, host: Inode, a_ops: AddressSpaceOperations, max_order: int) -> None:
        self.host = host
        self.a_ops = a_ops
        self.i_pages: dict[int, Folio] = {}
        self.max_order = max_order
        self.i_mmap_writable = 0


def mapping_max_folio_size(mapping: AddressSpace) -> int:
    return PAGE_SIZE << mapping.max_order


def mapping_writably_mapped(mapping: AddressSpace) -> bool:
    return mapping.i_mmap_writable > 0


def flush_dcache_folio(folio: Folio) -> None:
    """A no-op on x86, where caches are coherent."""


def filemap_get_folio(mapping: AddressSpace, index: int) -> Folio | None:
    return mapping.i_pages.get(index)


def filemap_add_folio(task: Task, mapping: AddressSpace, folio: Folio) -> int:
    """Insert a folio; -EEXIST if any page of its range is already cached.

    __filemap_add_folio() fires mm_filemap_add_to_page_cache. shmem inserts its folios with
    shmem_add_to_page_cache() instead, which has no tracepoint: the model's tmpfs shares this
    function, so the tracepoint is skipped for shmem mappings."""
    pages = mapping.i_pages
    first = folio.index
    for index in range(first, first + folio.nr_pages):
        if index in pages:
            return -17  # EEXIST
    for index in range(first, first + folio.nr_pages):
        pages[index] = folio
    task.kernel.generation += 1
    if mapping.a_ops.name != "shmem_aops":
        tp.trace_mm_filemap_add_to_page_cache(task, mapping.host.name, first, folio.order)
    return 0


def filemap_remove_folio(task: Task, folio: Folio) -> None:
    """filemap_remove_folio() → __filemap_remove_folio(), which fires
    mm_filemap_delete_from_page_cache."""
    tp.trace_mm_filemap_delete_from_page_cache(
        task, folio.mapping.host.name, folio.index, folio.order
    )
    pages = folio.mapping.i_pages
    for index in range(folio.index, folio.index + folio.nr_pages):
        del pages[index]
    task.kernel.generation += 1


def __filemap_get_folio(
    task: Task, mapping: AddressSpace, index: int, fgp_flags: int, order: int = 0
) -> Sleeps[Folio | None]:
    """Find the folio at ``index``, creating and locking it as ``fgp_flags`` ask (mm/filemap.c).

    ``order`` is what ``fgf_set_order()`` encodes in the flags in the kernel. Returns None where
    the kernel returns ERR_PTR(-ENOENT). A new folio is added locked, so taking its lock is never
    contended. The ``enter``/``exit`` events carry the index asked for and the index of the folio
    returned (None for -ENOENT): the page-cache lookup the cost model prices.
    """
    emit = task.emit
    emit((ENTER, task.pid, "__filemap_get_folio", index))
    pages = mapping.i_pages
    while True:  # the "repeat:" label
        folio = pages.get(index)
        if folio is None:
            break
        if fgp_flags & FGP_LOCK:
            if folio.owner is None:  # folio_trylock()
                folio.owner = task
                emit((FOLIO_LOCK, task.pid, folio.index, mapping.host.i_ino))
            else:
                yield from __folio_lock(task, folio)
            # The folio may have been truncated while we slept.
            if pages.get(index) is not folio:
                folio_unlock(task, folio)
                continue
        emit((EXIT, task.pid, "__filemap_get_folio", folio.index))
        return folio
    if not fgp_flags & FGP_CREAT:
        emit((EXIT, task.pid, "__filemap_get_folio", None))
        return None
    if order > mapping.max_order:
        order = mapping.max_order
    if index & ((1 << order) - 1):
        # Not aligned for that order: the largest order the index is aligned to (__ffs(index)).
        order = (index & -index).bit_length() - 1
    while True:
        folio = filemap_alloc_folio(mapping, index & ~((1 << order) - 1), order)
        if fgp_flags & FGP_LOCK:
            folio.owner = task  # __folio_set_locked() before insertion: never contended
        if filemap_add_folio(task, mapping, folio) == 0:
            if fgp_flags & FGP_LOCK:
                emit((FOLIO_LOCK, task.pid, folio.index, mapping.host.i_ino))
            emit((EXIT, task.pid, "__filemap_get_folio", folio.index))
            return folio
        if order == 0:
            # Someone inserted the page while we allocated: look it up again (the kernel's
            # -EEXIST goes back to "repeat:" the same way).
            emit((EXIT, task.pid, "__filemap_get_folio", None))
            return (yield from __filemap_get_folio(task, mapping, index, fgp_flags, 0))
        order -= 1


def folio_block_uptodate(folio: Folio, k: int) -> bool:
    """Whether page-sized block ``k`` of the folio holds valid data: the whole folio is
    uptodate, or the filesystem's per-block state says that block is."""
    if folio.uptodate:
        return True
    private = folio.private
    return private is not None and private.uptodate[k]


def stale_ranges(inode: Inode) -> list[tuple[int, int]]:
    """File byte ranges [start, end) inside i_size that a reader of the file would be shown
    uninitialized memory in: uninitialized bytes of an uptodate folio, or of an uptodate block
    of a folio that is not uptodate. Sorted and merged."""
    size = inode.i_size
    out: Ranges = []
    seen: set[int] = set()
    for folio in inode.i_mapping.i_pages.values():
        if not folio.uninit or id(folio) in seen:
            continue
        seen.add(id(folio))
        base = folio.index << PAGE_SHIFT
        for s, e in folio.uninit:
            for k in range(s >> PAGE_SHIFT, ((e - 1) >> PAGE_SHIFT) + 1):
                if not folio_block_uptodate(folio, k):
                    continue
                lo = max(s, k << PAGE_SHIFT)
                hi = min(e, (k + 1) << PAGE_SHIFT)
                lo, hi = base + lo, min(base + hi, size)
                if lo < hi:
                    ranges_add(out, lo, hi)
    return out
