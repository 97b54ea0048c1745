"""Readahead on a page fault, and the fault handler that starts it.

Follows ``filemap_fault()`` and ``do_sync_mmap_readahead()`` of mm/filemap.c and
``page_cache_ra_order()``/``ra_alloc_folio()``/``read_pages()`` of mm/readahead.c (v6.18).

A fault on a page of a file mapping that is not in the page cache reads around it: the
``ra_pages`` window (read_ahead_kb = 128 KiB, 32 pages) centred on the faulting page, with the
folio order of a read-around (0 since v6.16, when ``ra->order`` moved into file_ra_state and the
``+2`` ramp up went to async readahead), clipped at EOF. Every folio is allocated and added to the
page cache first (mm_filemap_add_to_page_cache each), then read (``->readahead``). The fault
handler dropped the mmap lock for that I/O, so it returns VM_FAULT_RETRY and the fault is
redone; the same happens after it read a cached folio that was not uptodate.

Simplifications: ``mmap_miss`` (which turns read-around off after 100 misses) and the
PG_readahead mark (set on the folio ``async_size`` pages before the window's end, which starts
async readahead when faulted on and which fault-around skips) are not kept: the mark falls
beyond EOF for files under 24 pages past the window start, which every catalogue scenario is;
VM_SEQ_READ/VM_RAND_READ (madvise) are not modelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import DIV_ROUND_UP, PAGE_SIZE
from writepath.kernel.mm import VM_FAULT_RETRY, VMA
from writepath.kernel.pagecache import (
    Folio,
    __folio_lock,
    filemap_add_folio,
    filemap_alloc_folio,
    folio_trylock,
    folio_unlock,
)
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import VM_FAULT_LOCKED, VM_FAULT_MAJOR, VM_FAULT_SIGBUS, Inode

#: bdi->ra_pages of a disk filesystem: read_ahead_kb = 128 (VM_READAHEAD_PAGES, a loop device's
#: default); a filesystem without a disk (ramfs) has none.
RA_PAGES: Final = 32

#: ``->readahead`` walks of address_space_operations that have one beside ``read_folio``
#: (``iomap_readahead()`` fires iomap_iter), by a_ops name; each gets the byte range read.
#: A filesystem module registers its own (pagecache.AddressSpaceOperations has no member).
READAHEAD_WALKS: dict[str, Callable[[Task, Inode, int, int], None]] = {}


def read_pages(task: Task, inode: Inode, folios: list[Folio]) -> None:
    """read_pages(): hand the new folios to ``->readahead`` (the model reads each folio with
    ``read_folio``, synchronously), which unlocks them as they complete."""
    if not folios:
        return
    mapping = inode.i_mapping
    walk = READAHEAD_WALKS.get(mapping.a_ops.name)
    if walk is not None:
        start = folios[0].index * PAGE_SIZE
        end = (folios[-1].index + folios[-1].nr_pages) * PAGE_SIZE
        walk(task, inode, start, end - start)
    for folio in folios:
        mapping.a_ops.read_folio(task, folio)
        folio_unlock(task, folio)


def page_cache_ra_order(task: Task, inode: Inode, start: int, size: int, order: int) -> None:
    """page_cache_ra_order() (mm/readahead.c, v6.18): allocate folios of ``order`` (smaller
    where the index is not aligned to it or the folio would pass EOF) over [start, start +
    size), stopping at EOF and at the first page already cached (ra_alloc_folio() fails with
    -EEXIST there and the fallback does_page_cache_ra() of the rest is order 0, which a cached
    page also stops), then read them."""
    mapping = inode.i_mapping
    if inode.i_size == 0:
        return
    limit = min((inode.i_size - 1) // PAGE_SIZE, start + size - 1)
    order = min(order, mapping.max_order, max(size.bit_length() - 1, 0))
    folios: list[Folio] = []
    index = start
    while index <= limit:
        this = order
        if index & ((1 << this) - 1):
            this = (index & -index).bit_length() - 1
        while this > 0 and index + (1 << this) - 1 > limit:
            this -= 1
        folio = filemap_alloc_folio(mapping, index, this)
        folio.owner = task  # __folio_set_locked() before insertion
        if filemap_add_folio(task, mapping, folio) != 0:
            # -EEXIST: read what was allocated; do_page_cache_ra() → page_cache_ra_unbounded()
            # goes on in order-0 folios, reading each batch where it meets a cached page.
            folio.owner = None
            read_pages(task, inode, folios)
            folios = []
            order = 0
            index += 1
            continue
        task.emit((tp.FOLIO_LOCK, task.pid, folio.index, inode.i_ino))
        folios.append(folio)
        index += 1 << this
    read_pages(task, inode, folios)


def do_sync_mmap_readahead(task: Task, vma: VMA, pgoff: int) -> bool:
    """do_sync_mmap_readahead() (mm/filemap.c, v6.18), mmap read-around: ``ra_pages`` pages
    starting half of them before the faulting page, order 0. Returns whether it dropped the
    mmap lock for the I/O (``fpin``): on a first try, not on a retry (FAULT_FLAG_TRIED)."""
    inode = vma.vm_file
    assert inode is not None
    if not inode.fs.backed:
        # ramfs: the no-op backing device has ra_pages = 0, no read-around.
        return False
    fpin = task.pid not in task.mm.fault_tried
    start = max(0, pgoff - RA_PAGES // 2)
    page_cache_ra_order(task, inode, start, RA_PAGES, 0)
    return fpin


def filemap_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    """filemap_fault() (mm/filemap.c, v6.18), vm_ops->fault of page-cache filesystems.

    A page wholly beyond EOF is VM_FAULT_SIGBUS (before the tracepoint). A cached folio is
    locked (sleeping if another task, or this one, holds it). A missing one starts read-around
    (``do_sync_mmap_readahead()``). A folio that is not uptodate is read. Where the handler
    dropped the mmap lock (for I/O, read-around or a read, or to sleep for a contended folio
    lock; on a first try) it returns
    VM_FAULT_RETRY with the folio unlocked; else VM_FAULT_LOCKED and the folio locked. Either
    carries VM_FAULT_MAJOR when the page was not in the page cache at all, as the kernel's does
    (reading a cached folio that is not uptodate is not a major fault).
    """
    inode = vma.vm_file
    assert inode is not None
    mapping = inode.i_mapping
    if pgoff >= DIV_ROUND_UP(inode.i_size, PAGE_SIZE):
        return VM_FAULT_SIGBUS, None
    tp.trace_mm_filemap_fault(task, inode.name, pgoff)
    first_try = task.pid not in task.mm.fault_tried
    fpin = False
    major = 0
    folio = mapping.i_pages.get(pgoff)
    if folio is None:
        major = VM_FAULT_MAJOR
        fpin = do_sync_mmap_readahead(task, vma, pgoff)
    while True:  # retry_find
        folio = mapping.i_pages.get(pgoff)
        if folio is None:
            # __filemap_get_folio(FGP_CREAT | FGP_FOR_MMAP): an order-0 folio, added locked.
            folio = filemap_alloc_folio(mapping, pgoff, 0)
            folio.owner = task
            filemap_add_folio(task, mapping, folio)
            task.emit((tp.FOLIO_LOCK, task.pid, folio.index, inode.i_ino))
        elif not folio_trylock(task, folio):
            # lock_folio_maybe_drop_mmap(): a contended folio lock, on a first try, drops the
            # mmap lock before sleeping for it (fpin), and the fault is retried afterwards.
            fpin = fpin or first_try
            yield from __folio_lock(task, folio)
            if mapping.i_pages.get(pgoff) is not folio:  # truncated while we slept
                folio_unlock(task, folio)
                continue
        if not folio.uptodate:
            # page_not_uptodate: drop the mmap lock (first try) and read the folio.
            fpin = fpin or first_try
            mapping.a_ops.read_folio(task, folio)
            folio_unlock(task, folio)
            if fpin:
                return VM_FAULT_RETRY | major, None
            continue
        break
    if fpin:
        folio_unlock(task, folio)
        return VM_FAULT_RETRY | major, None
    if pgoff >= DIV_ROUND_UP(inode.i_size, PAGE_SIZE):
        folio_unlock(task, folio)
        return VM_FAULT_SIGBUS, None
    return VM_FAULT_LOCKED | major, folio
