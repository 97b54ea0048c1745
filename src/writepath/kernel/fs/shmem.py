"""tmpfs: shmem_write_begin/shmem_write_end, shmem_file_write_iter, shmem_fault — mm/shmem.c.

Follows v6.12–v6.18 with the default mount (huge=never): every folio is order 0 and
``mapping_max_folio_size()`` is PAGE_SIZE, so the write loop works a page at a time. Seals,
hwpoison, swap and fallocate are not modelled. tmpfs keeps its data only in the page cache: a
page it does not have is a hole and reads as zeros.
"""

from __future__ import annotations

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import (
    DIV_ROUND_UP,
    MAX_LFS_FILESIZE,
    PAGE_SHIFT,
    PAGE_SIZE,
)
from writepath.kernel.filemap import generic_write_checks
from writepath.kernel.iov_iter import IovIter
from writepath.kernel.mm import VMA
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpace,
    AddressSpaceOperations,
    Folio,
    __filemap_get_folio,
    filemap_add_folio,
    filemap_alloc_folio,
    folio_lock,
    folio_mark_dirty,
    folio_mark_uptodate,
    folio_size,
    folio_unlock,
    folio_zero_range,
    folio_zero_segments,
    offset_in_folio,
)
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.tracepoints import ENTER, EXIT
from writepath.kernel.vfs import (
    VM_FAULT_LOCKED,
    VM_FAULT_SIGBUS,
    File,
    FileSystem,
    Kiocb,
    file_update_time,
    i_size_write,
    inode_lock,
    inode_unlock,
)


def shmem_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """shmem_write_begin(): shmem_get_folio(SGP_WRITE) returns the folio locked; a new one is
    not uptodate and is not zeroed here (shmem_write_end zeroes what the copy missed).

    The kernel's lookup is shmem_get_folio_gfp() (filemap_get_entry(), folio_lock(), or
    shmem_alloc_and_add_folio() for a hole): the same page-cache lookup, lock and insertion as
    ``__filemap_get_folio(FGP_WRITEBEGIN)``, which the model shares, so the trace names it so."""
    emit = task.emit
    emit((ENTER, task.pid, "shmem_write_begin", pos))
    folio = yield from __filemap_get_folio(task, mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN)
    assert folio is not None
    emit((EXIT, task.pid, "shmem_write_begin", 0))
    return 0, folio, None


def shmem_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """shmem_write_end(): i_size first (pos + copied, even for a zero copy), then zero all of a
    not-uptodate folio that the copy did not fill, and accept ``copied``."""
    emit = task.emit
    emit((ENTER, task.pid, "shmem_write_end", copied))
    inode = mapping.host
    if pos + copied > inode.i_size:
        i_size_write(task, inode, pos + copied)
    if not folio.uptodate:
        size = folio_size(folio)
        if copied < size:
            start = offset_in_folio(folio, pos)
            folio_zero_segments(folio, 0, start, start + copied, size)
        folio_mark_uptodate(task, folio)
    folio_mark_dirty(task, folio)
    folio_unlock(task, folio)
    emit((EXIT, task.pid, "shmem_write_end", copied))
    return copied


def shmem_read_folio(task: Task, folio: Folio) -> int:
    """Never called by the VFS for shmem (it has no read_folio); faults zero-fill instead."""
    folio_zero_range(folio, 0, folio_size(folio))
    folio_mark_uptodate(task, folio)
    return 0


def shmem_file_write_iter(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """shmem_file_write_iter() (mm/shmem.c, v6.18): inode lock, checks, file_remove_privs(),
    file_update_time(), generic_perform_write(). file_remove_privs() and the seal checks change
    nothing the model observes (no setuid bits, no seals)."""
    inode = iocb.ki_filp.f_inode
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        ret = file_update_time(task, iocb.ki_filp)
        if not ret:
            ret = yield from task.kernel.perform_write(task, iocb, from_)
    inode_unlock(task, inode)
    return ret


def shmem_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    """shmem_fault() → shmem_get_folio_gfp(SGP_CACHE): SIGBUS beyond EOF; a cached folio is
    locked (sleeping for it) and zeroed if not uptodate; a hole gets a new zeroed folio."""
    inode = vma.vm_file
    assert inode is not None
    mapping = inode.i_mapping
    if pgoff >= DIV_ROUND_UP(inode.i_size, PAGE_SIZE):
        return VM_FAULT_SIGBUS, None
    folio = mapping.i_pages.get(pgoff)
    if folio is None:
        folio = filemap_alloc_folio(mapping, pgoff, 0)
        folio.owner = task
        filemap_add_folio(task, mapping, folio)
        task.emit((tp.FOLIO_LOCK, task.pid, folio.index, inode.i_ino))
    else:
        yield from folio_lock(task, folio)
        if mapping.i_pages.get(pgoff) is not folio:
            folio_unlock(task, folio)
            return (yield from shmem_fault(task, vma, pgoff))
    if not folio.uptodate:
        folio_zero_range(folio, 0, folio_size(folio))
        folio_mark_uptodate(task, folio)
    return VM_FAULT_LOCKED, folio


shmem_aops = AddressSpaceOperations(
    "shmem_aops", shmem_write_begin, shmem_write_end, shmem_read_folio
)


def tmpfs() -> FileSystem:
    """tmpfs (mm/shmem.c) mounted with the defaults."""
    return FileSystem(
        "tmpfs",
        MAX_LFS_FILESIZE,
        0,
        False,
        shmem_aops,
        shmem_file_write_iter,
        shmem_fault,
    )
