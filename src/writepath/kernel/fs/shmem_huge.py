"""tmpfs mounted ``-o huge=always``: shmem's large-folio write path — mm/shmem.c (v6.18).

With huge=always, ``shmem_huge_global_enabled()`` allows the PMD order for every regular file,
the mapping has large folios, so ``generic_perform_write()`` works in chunks of
``mapping_max_folio_size()`` (2 MiB), and ``shmem_write_begin()`` → ``shmem_get_folio_gfp()``
allocates a PMD-sized folio for a page not yet cached, provided no page of that aligned 2 MiB
range is cached yet (``shmem_suitable_orders()``); otherwise an order-0 folio. The other mTHP
sizes are off by default (their ``shmem_enabled`` is "never"), so there is nothing in between.
``shmem_write_end()`` is tmpfs's: it zeroes all of a new folio that the copy did not reach, so a
short copy into a 2 MiB folio leaves zeros, never stale memory, up to the folio's end.

Not modelled: the fallback when a huge page cannot be allocated (memory is not short here) and
huge faults (a fault on a hole gets an order-0 folio, as on plain tmpfs).
"""

from __future__ import annotations

from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import MAX_LFS_FILESIZE, MAX_PAGECACHE_ORDER, PAGE_SHIFT
from writepath.kernel.fs.shmem import (
    shmem_fault,
    shmem_file_write_iter,
    shmem_read_folio,
    shmem_write_end,
)
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpace,
    AddressSpaceOperations,
    Folio,
    __filemap_get_folio,
)
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import File, FileSystem

#: HPAGE_PMD_ORDER on x86_64.
HPAGE_PMD_ORDER: Final = 9


def shmem_suitable_order(mapping: AddressSpace, index: int) -> int:
    """The PMD order if no page of the aligned PMD range around ``index`` is cached, else 0."""
    nr = 1 << HPAGE_PMD_ORDER
    first = index & ~(nr - 1)
    if any(i in mapping.i_pages for i in range(first, first + nr)):
        return 0
    return HPAGE_PMD_ORDER


def shmem_write_begin_huge(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """shmem_write_begin() on a huge=always mount: shmem_get_folio(SGP_WRITE) returns the
    cached folio locked, or a new one of the PMD order (or order 0 when part of the PMD range
    is cached already), not uptodate and not zeroed."""
    task.emit((tp.ENTER, task.pid, "shmem_write_begin", pos))
    index = pos >> PAGE_SHIFT
    order = 0 if index in mapping.i_pages else shmem_suitable_order(mapping, index)
    folio = yield from __filemap_get_folio(task, mapping, index, FGP_WRITEBEGIN, order)
    assert folio is not None
    task.emit((tp.EXIT, task.pid, "shmem_write_begin", 0))
    return 0, folio, None


shmem_huge_aops = AddressSpaceOperations(
    "shmem_aops", shmem_write_begin_huge, shmem_write_end, shmem_read_folio
)


def tmpfs_huge() -> FileSystem:
    """tmpfs mounted with huge=always: PMD-sized folios, 2 MiB write chunks."""
    return FileSystem(
        "tmpfs-huge",
        MAX_LFS_FILESIZE,
        MAX_PAGECACHE_ORDER,
        False,
        shmem_huge_aops,
        shmem_file_write_iter,
        shmem_fault,
    )
