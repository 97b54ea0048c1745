"""pread(2) through the page cache — fs/read_write.c ``ksys_pread64()`` and mm/filemap.c
``filemap_read()`` (v6.14–v6.18).

A reader of the file being written: it finds or creates each folio of the range, and a folio that
is not uptodate is read under its folio lock (``filemap_update_page()``), so the reader sleeps
behind a writer that holds the lock and can bring a dropped page back into the cache.

Simplifications: the user buffer the bytes go to is not modelled (the write path's model never
stores to user memory), so the call returns how many bytes it read; readahead is the one folio
the read needs; a hole of tmpfs or ramfs reads the zero page without creating a folio, as
shmem_file_read_iter() does.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.constants import PAGE_SHIFT
from writepath.kernel.pagecache import (
    filemap_add_folio,
    filemap_alloc_folio,
    folio_lock,
    folio_unlock,
)
from writepath.kernel.task import SYSCALL_ENTRY, Sleeps, Task

EBADF: Final = 9
EINVAL: Final = 22


def filemap_read(task: Task, fd: int, pos: int, count: int) -> Sleeps[int]:
    """Read up to ``count`` bytes at ``pos``, bounded by i_size when the read starts."""
    file = task.files.get(fd)
    assert file is not None
    inode = file.f_inode
    mapping = inode.i_mapping
    end = min(pos + count, inode.i_size)
    if end <= pos:
        return 0
    for index in range(pos >> PAGE_SHIFT, ((end - 1) >> PAGE_SHIFT) + 1):
        folio = mapping.i_pages.get(index)
        if folio is None:
            if not inode.fs.backed:
                continue  # a shmem hole reads the zero page
            # page_cache_sync_ra(): a new folio, added locked, read, unlocked.
            folio = filemap_alloc_folio(mapping, index, 0)
            folio.owner = task
            filemap_add_folio(task, mapping, folio)
            mapping.a_ops.read_folio(task, folio)
            folio_unlock(task, folio)
            continue
        if not folio.uptodate:
            yield from folio_lock(task, folio)
            if mapping.i_pages.get(index) is folio and not folio.uptodate:
                mapping.a_ops.read_folio(task, folio)
            folio_unlock(task, folio)
    # The read may have raced with a truncation: it returns no more than i_size now allows.
    return max(0, min(end, inode.i_size) - pos)


def ksys_pread64(task: Task, fd: int, count: int, pos: int) -> Sleeps[int]:
    """pread(2): at ``pos``; the file position does not move."""
    yield SYSCALL_ENTRY
    if pos < 0:
        return -EINVAL
    if fd not in task.files:
        return -EBADF
    return (yield from filemap_read(task, fd, pos, count))
