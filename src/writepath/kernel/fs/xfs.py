"""xfs buffered writes through iomap — fs/iomap/buffered-io.c, fs/xfs/xfs_file.c (v6.13–v6.18).

xfs does not use ``generic_perform_write()``: ``iomap_write_iter()`` has a loop of the same shape
which, as merged up to v6.18, still prefaults the source before ``iomap_write_begin()`` (the
pre-patch design; the same change was proposed for iomap in 2025 but not merged). So every model
design runs this loop unchanged on xfs, as every kernel version so far does
(``../shared/reference/kernel-code.md`` §8).

Simplifications: the write is one iomap mapping (extent boundaries do not split it, and post-EOF
delalloc blocks are not punched out); per-block uptodate state (``iomap_folio_state``) reuses the
folio's buffer fields; ``xfs_file_write_checks()`` is ``generic_write_checks()`` plus the zeroing
of the old EOF block tail; blocks are 4 KiB.
"""

from __future__ import annotations

from writepath.kernel import tracepoints as tp
from writepath.kernel.buffer import (
    block_read_full_folio,
    folio_create_empty_buffers,
    read_block,
    zero_partial_block,
)
from writepath.kernel.constants import (
    MAX_LFS_FILESIZE,
    MAX_PAGECACHE_ORDER,
    PAGE_SHIFT,
    PAGE_SIZE,
)
from writepath.kernel.filemap import EFAULT, filemap_fault, generic_write_checks
from writepath.kernel.iov_iter import (
    IovIter,
    copy_folio_from_iter_atomic,
    fault_in_iov_iter_readable,
    iov_iter_revert,
)
from writepath.kernel.mm import VMA
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpace,
    AddressSpaceOperations,
    Folio,
    __filemap_get_folio,
    fgf_set_order,
    filemap_remove_folio,
    folio_mark_dirty,
    folio_mark_uptodate,
    folio_size,
    folio_unlock,
    folio_zero_segments,
    mapping_max_folio_size,
    offset_in_folio,
)
from writepath.kernel.task import (
    COND_RESCHED,
    Sleeps,
    Task,
    lock_acquire,
    lock_release,
    note_no_progress,
    note_progress,
)
from writepath.kernel.vfs import File, FileSystem, Inode, Kiocb, i_size_write


def xfs_no_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    raise NotImplementedError("xfs writes through iomap_write_iter(), not ->write_begin")


def xfs_no_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    raise NotImplementedError("xfs writes through iomap_write_iter(), not ->write_end")


def iomap_read_folio(task: Task, folio: Folio) -> int:
    """iomap_read_folio(): read every block not yet uptodate; holes read as zeros."""
    return block_read_full_folio(task, folio)


def iomap_write_begin(task: Task, inode: Inode, pos: int, len: int) -> Sleeps[Folio]:
    """__iomap_get_folio() then __iomap_write_begin(): a block the write covers only in part is
    read from disk if it has data there and lies below EOF, else zeroed around the write
    (iomap_block_needs_zeroing())."""
    task.emit((tp.ENTER, task.pid, "iomap_write_begin", pos))
    mapping = inode.i_mapping
    folio = yield from __filemap_get_folio(
        task, mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN, fgf_set_order(len)
    )
    assert folio is not None
    if not folio.uptodate:
        folio_create_empty_buffers(folio)
        assert folio.bh_uptodate is not None
        start = offset_in_folio(folio, pos)
        end = min(start + len, folio_size(folio))
        for k in range(folio.nr_pages):
            block_start = k * PAGE_SIZE
            block_end = block_start + PAGE_SIZE
            if folio.bh_uptodate[k] or block_end <= start or block_start >= end:
                continue
            if block_start >= start and block_end <= end:
                continue  # fully overwritten
            index = folio.index + k
            block_pos = index << PAGE_SHIFT
            if index not in inode.disk or block_pos >= inode.i_size:
                folio_zero_segments(
                    folio,
                    max(end, block_start),
                    block_end,
                    block_start,
                    max(start, block_start),
                )
            else:
                read_block(inode, folio, k)
            folio.bh_uptodate[k] = True
    task.emit((tp.EXIT, task.pid, "iomap_write_begin", 0))
    return folio


def __iomap_write_end(task: Task, pos: int, len: int, copied: int, folio: Folio) -> bool:
    """Refuse a short copy into a folio that is not uptodate; else mark the range uptodate."""
    task.emit((tp.ENTER, task.pid, "iomap_write_end", copied))
    if copied < len and not folio.uptodate:
        task.emit((tp.EXIT, task.pid, "iomap_write_end", 0))
        return False
    if not folio.uptodate:
        assert folio.bh_uptodate is not None
        start = offset_in_folio(folio, pos)
        for k in range(start >> PAGE_SHIFT, ((start + len - 1) >> PAGE_SHIFT) + 1):
            folio.bh_uptodate[k] = True
        if all(folio.bh_uptodate):
            folio_mark_uptodate(task, folio)
    folio_mark_dirty(folio)
    task.emit((tp.EXIT, task.pid, "iomap_write_end", copied))
    return True


def iomap_write_failed(task: Task, inode: Inode, pos: int, len: int) -> None:
    """Drop page-cache folios wholly beyond EOF that a failed write instantiated."""
    if pos + len > inode.i_size:
        first = (max(pos, inode.i_size) + PAGE_SIZE - 1) >> PAGE_SHIFT
        last = (pos + len - 1) >> PAGE_SHIFT
        for index in range(first, last + 1):
            folio = inode.i_mapping.i_pages.get(index)
            if folio is not None and folio.index >= first and folio.owner is None:
                filemap_remove_folio(task, folio)


def iomap_write_iter(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """iomap_write_iter() as merged through v6.18: prefault the chunk, then copy atomically."""
    task.emit((tp.ENTER, task.pid, "iomap_write_iter", i.count))
    inode = iocb.ki_filp.f_inode
    mapping = inode.i_mapping
    pos = iocb.ki_pos
    chunk = mapping_max_folio_size(mapping)
    total_written = 0
    status = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        offset = pos & (chunk - 1)
        nbytes = min(chunk - offset, nbytes)
        if (yield from fault_in_iov_iter_readable(task, i, nbytes)) == nbytes:
            status = -EFAULT
            break
        folio = yield from iomap_write_begin(task, inode, pos, nbytes)
        offset = offset_in_folio(folio, pos)
        if nbytes > folio_size(folio) - offset:
            nbytes = folio_size(folio) - offset
        copied = copy_folio_from_iter_atomic(task, folio, offset, nbytes, i)
        written = copied if __iomap_write_end(task, pos, nbytes, copied, folio) else 0
        old_size = inode.i_size
        if pos + written > old_size:
            i_size_write(task, inode, pos + written)
        folio_unlock(task, folio)  # __iomap_put_folio()
        yield COND_RESCHED
        if written == 0:
            task.emit((tp.RETRY, task.pid, pos, nbytes))
            note_no_progress(task, (pos, i.count, chunk, nbytes))
            iomap_write_failed(task, inode, pos, nbytes)
            iov_iter_revert(i, copied)
            if chunk > PAGE_SIZE:
                chunk //= 2
            if copied:
                nbytes = copied
                retry = True
                continue
        else:
            note_progress(task)
            total_written += written
            pos += written
        if not i.count:
            break
    ret = total_written if total_written else status
    if total_written:
        iocb.ki_pos += total_written
    task.emit((tp.EXIT, task.pid, "iomap_write_iter", ret))
    return ret


def xfs_file_buffered_write(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """xfs_file_buffered_write(): the iolock, xfs_file_write_checks() (the generic checks, then
    zeroing of the old EOF block tail when writing beyond EOF), the iomap loop."""
    inode = iocb.ki_filp.f_inode
    yield from lock_acquire(task, inode.i_rwsem)
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        if iocb.ki_pos > inode.i_size:
            zero_partial_block(inode, inode.i_size, iocb.ki_pos)
        ret = yield from iomap_write_iter(task, iocb, from_)
    lock_release(task, inode.i_rwsem)
    return ret


def xfs_filemap_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    return (yield from filemap_fault(task, vma, pgoff))


xfs_aops = AddressSpaceOperations(
    "xfs_aops", xfs_no_write_begin, xfs_no_write_end, iomap_read_folio
)


def xfs() -> FileSystem:
    """xfs with 4 KiB blocks and large folios."""
    return FileSystem(
        "xfs",
        MAX_LFS_FILESIZE,
        MAX_PAGECACHE_ORDER,
        True,
        xfs_aops,
        xfs_file_buffered_write,
        xfs_filemap_fault,
    )
