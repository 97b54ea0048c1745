"""posix_fadvise(POSIX_FADV_DONTNEED) — mm/fadvise.c ``generic_fadvise()`` and mm/truncate.c
``mapping_try_invalidate()`` (v6.14–v6.18).

Drops the clean, unlocked, unmapped folios wholly inside the range; partial pages at either end
are kept (the start is rounded up, the end down). Nothing here sleeps: each folio is only
trylocked, and a folio someone holds is skipped.

Simplifications: the model has no writeback, so the ``__filemap_fdatawrite_range()`` that starts
it first changes nothing and a dirty folio is never evicted; shmem folios are swap-backed and
never clean, so tmpfs and ramfs keep every folio, as the kernel does.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import filemap_remove_folio, folio_trylock, folio_unlock
from writepath.kernel.task import SYSCALL_ENTRY, Sleeps, Task

EBADF: Final = 9
EINVAL: Final = 22

POSIX_FADV_DONTNEED: Final = 4


def folio_mapped_by(task: Task, data: bytearray) -> bool:
    """folio_mapped(): does a page table entry of the task's mm point into this folio?"""
    return any(buf is data for buf, _ in task.mm.pte.values())


def generic_fadvise(task: Task, fd: int, offset: int, length: int, advice: int) -> Sleeps[int]:
    """posix_fadvise(fd, offset, len, POSIX_FADV_DONTNEED); ``len`` 0 means to the end."""
    yield SYSCALL_ENTRY
    file = task.files.get(fd)
    if file is None:
        return -EBADF
    if advice != POSIX_FADV_DONTNEED or offset < 0 or length < 0:
        return -EINVAL
    inode = file.f_inode
    if not inode.fs.backed:
        return 0
    end = offset + length - 1 if length else (1 << 63) - 1
    start_index = (offset + PAGE_SIZE - 1) >> PAGE_SHIFT
    end_index = end >> PAGE_SHIFT
    if (end & (PAGE_SIZE - 1)) != PAGE_SIZE - 1:
        end_index -= 1  # a partial last page is kept
    mapping = inode.i_mapping
    seen: set[int] = set()
    for index in sorted(i for i in mapping.i_pages if start_index <= i <= end_index):
        folio = mapping.i_pages.get(index)
        if folio is None or id(folio) in seen:
            continue
        seen.add(id(folio))
        if folio.index < start_index or folio.index + folio.nr_pages - 1 > end_index:
            continue
        if folio.dirty or not folio_trylock(task, folio):
            continue
        if not folio_mapped_by(task, folio.data):
            filemap_remove_folio(task, folio)
        folio_unlock(task, folio)
    return 0
