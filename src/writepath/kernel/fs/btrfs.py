"""btrfs buffered writes — fs/btrfs/file.c (v6.18: btrfs_buffered_write(), copy_one_range()).

btrfs has its own write loop, not ``generic_perform_write()``. Since v6.15 its body is
``copy_one_range()``: one folio per pass, at most ``mapping_max_folio_size()`` bytes (a page: large
folios are only built with CONFIG_BTRFS_EXPERIMENTAL). Before the folio is locked the chunk's
source is faulted in, and *any* byte that cannot be faulted in fails the call with EFAULT (the
test is ``if (fault_in_iov_iter_readable(...))``, not ``== write_bytes``): a chunk that is only
partly readable writes nothing of its readable part. A short copy into a folio that is not
uptodate is reverted to a zero copy, and a zero copy returns 0 without dirtying anything, so the
loop retries the same position.

``proposed`` applies Dave Hansen's "[PATCH 6/7] btrfs: Move prefaulting out of hot write path"
(linux-fsdevel, 29 Jan 2025; not merged; facts.md §3) to this loop: no prefault; after a pass
that copied nothing, fault the chunk in and fail with EFAULT only if none of it could be. The
posting was made against the v6.13 loop, where the chunk size is a local of the loop; on the
v6.18 loop the chunk is recomputed the way ``copy_one_range()`` computes it.

Simplified: space reservation, extent locking, ordered extents, nodatacow and qgroups never fail
or wait here (the model has no space limit and no writeback); ``btrfs_write_check()`` is the
generic checks plus the zeroing of the old EOF block that ``btrfs_cont_expand()`` does when the
write starts in a later block; blocks are 4 KiB (one page).
"""

from __future__ import annotations

from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.buffer import read_block, zero_partial_block
from writepath.kernel.constants import MAX_LFS_FILESIZE, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.filemap import (
    EFAULT,
    filemap_fault,
    generic_write_checks,
    loop_copies_first,
)
from writepath.kernel.iov_iter import (
    IovIter,
    copy_folio_from_iter_atomic,
    fault_in_iov_iter_readable,
    iov_iter_revert,
)
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpaceOperations,
    Folio,
    __filemap_get_folio,
    balance_dirty_pages_ratelimited_flags,
    fgf_set_order,
    folio_mark_dirty,
    folio_mark_uptodate,
    folio_pos,
    folio_size,
    folio_unlock,
    folio_zero_range,
    mapping_max_folio_size,
    offset_in_folio,
)
from writepath.kernel.task import (
    COND_RESCHED,
    Sleeps,
    Task,
    note_loop_start,
    note_no_progress,
    note_progress,
)
from writepath.kernel.vfs import (
    File,
    FileSystem,
    Inode,
    Kiocb,
    file_update_time,
    i_size_write,
    inode_lock,
    inode_unlock,
)

BTRFS_SECTORSIZE: Final = PAGE_SIZE


def btrfs_read_folio(task: Task, folio: Folio) -> int:
    """btrfs_read_folio(): each block is read from its extent, or zeroed where the file has a
    hole or the block lies wholly past EOF; then the folio is uptodate."""
    inode = folio.mapping.host
    for k in range(folio.nr_pages):
        block_pos = folio_pos(folio) + (k << PAGE_SHIFT)
        if folio.index + k in inode.disk and block_pos < inode.i_size:
            read_block(inode, folio, k)
        else:
            folio_zero_range(folio, k << PAGE_SHIFT, PAGE_SIZE)
    folio_mark_uptodate(task, folio)
    return 0


def prepare_uptodate_folio(task: Task, inode: Inode, folio: Folio, pos: int, len: int) -> None:
    """Read a folio that is not uptodate when the write does not start and end on block
    boundaries inside it (clamped to the folio): the blocks it covers only in part must hold
    the file's data before a partial copy can be accepted."""
    if folio.uptodate:
        return
    clamp_start = max(pos, folio_pos(folio))
    clamp_end = min(pos + len, folio_pos(folio) + folio_size(folio))
    if clamp_start % BTRFS_SECTORSIZE == 0 and clamp_end % BTRFS_SECTORSIZE == 0:
        return
    btrfs_read_folio(task, folio)


def prepare_one_folio(task: Task, inode: Inode, pos: int, write_bytes: int) -> Sleeps[Folio]:
    """The locked folio at ``pos``, made uptodate where the write needs it to be."""
    folio = yield from __filemap_get_folio(
        task, inode.i_mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN, fgf_set_order(write_bytes)
    )
    assert folio is not None
    prepare_uptodate_folio(task, inode, folio, pos, write_bytes)
    return folio


def btrfs_dirty_folio(task: Task, inode: Inode, folio: Folio, pos: int, copied: int) -> None:
    """Mark the copied range delalloc and the folio dirty; i_size = pos + copied if larger. A
    fully copied folio is uptodate (btrfs_folio_set_uptodate() over the range)."""
    if offset_in_folio(folio, pos) == 0 and copied >= folio_size(folio):
        folio_mark_uptodate(task, folio)
    first = pos >> PAGE_SHIFT
    last = (pos + copied - 1) >> PAGE_SHIFT
    for index in range(first, last + 1):
        if index not in inode.disk:
            inode.delalloc.add(index)
    folio_mark_dirty(task, folio)  # btrfs_folio_clamp_set_dirty(), one block per page here
    if pos + copied > inode.i_size:
        i_size_write(task, inode, pos + copied)


def copy_one_range(task: Task, inode: Inode, i: IovIter, start: int) -> Sleeps[int]:
    """One pass of the loop (fs/btrfs/file.c, v6.18): bytes copied (0: retry the same range),
    or -EFAULT."""
    chunk = mapping_max_folio_size(inode.i_mapping)
    write_bytes = min(i.count, chunk - (start & (chunk - 1)))
    balance_dirty_pages_ratelimited_flags(task, inode.i_mapping)
    # Any byte that cannot be faulted in fails the pass (not only "none of it").
    if not loop_copies_first(task, "btrfs_buffered_write") and (
        (yield from fault_in_iov_iter_readable(task, i, write_bytes)) != 0
    ):
        return -EFAULT
    task.emit((tp.ENTER, task.pid, "prepare_one_folio", start))
    folio = yield from prepare_one_folio(task, inode, start, write_bytes)
    task.emit((tp.EXIT, task.pid, "prepare_one_folio", 0))
    write_bytes = min(write_bytes, folio_size(folio) - offset_in_folio(folio, start))
    copied = copy_folio_from_iter_atomic(task, folio, offset_in_folio(folio, start), write_bytes, i)
    if copied < write_bytes and not folio.uptodate:
        # A partly written block of a folio that is not uptodate cannot be kept: redo it all.
        iov_iter_revert(i, copied)
        copied = 0
    if copied == 0:
        folio_unlock(task, folio)  # btrfs_drop_folio()
        yield COND_RESCHED
        return 0
    btrfs_dirty_folio(task, inode, folio, start, copied)
    folio_unlock(task, folio)  # btrfs_drop_folio()
    yield COND_RESCHED
    return copied


def btrfs_write_check(task: Task, file: File, pos: int) -> None:
    """btrfs_write_check(): file_remove_privs() (nothing to do in the model), the mtime and
    ctime update (btrfs sets them itself rather than through file_update_time(); the model
    emits that update as ``file_update_time``, the event every filesystem's timestamp update
    is priced as), then a write that starts in a block past the one holding EOF first has
    btrfs_cont_expand() fill the gap with a hole, zeroing the old EOF block's tail
    (btrfs_truncate_block()); i_size itself is left to the write."""
    inode = file.f_inode
    file_update_time(task, file)
    start_pos = pos & ~(BTRFS_SECTORSIZE - 1)
    if start_pos > inode.i_size:
        zero_partial_block(inode, inode.i_size, pos)


def btrfs_buffered_write(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """btrfs_buffered_write() (fs/btrfs/file.c, v6.18), with the ``proposed`` form's late
    fault-in after a pass that copied nothing."""
    inode = iocb.ki_filp.f_inode
    # btrfs_inode_lock() without BTRFS_ILOCK_SHARED
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    ret = generic_write_checks(task, iocb, i)
    if ret <= 0:
        inode_unlock(task, inode)
        return ret
    task.emit((tp.ENTER, task.pid, "btrfs_buffered_write", i.count))
    note_loop_start(task)
    btrfs_write_check(task, iocb.ki_filp, iocb.ki_pos)
    pos = iocb.ki_pos
    num_written = 0
    copy_first = loop_copies_first(task, "btrfs_buffered_write")
    chunk = mapping_max_folio_size(inode.i_mapping)
    while i.count > 0:
        ret = yield from copy_one_range(task, inode, i, pos)
        if ret < 0:
            break
        if ret == 0:
            note_no_progress(task, (pos, i.count))
            write_bytes = min(i.count, chunk - (pos & (chunk - 1)))
            if copy_first and (
                (yield from fault_in_iov_iter_readable(task, i, write_bytes)) == write_bytes
            ):
                ret = -EFAULT
                break
            continue
        note_progress(task)
        pos += ret
        num_written += ret
    if num_written > 0:
        iocb.ki_pos += num_written
    result = num_written if num_written else ret
    task.emit((tp.EXIT, task.pid, "btrfs_buffered_write", result))
    inode_unlock(task, inode)  # btrfs_inode_unlock()
    return result


# No ->write_begin/->write_end: btrfs writes through btrfs_buffered_write() (fs/btrfs/inode.c).
btrfs_aops = AddressSpaceOperations("btrfs_aops", None, None, btrfs_read_folio)


def btrfs() -> FileSystem:
    """btrfs with 4 KiB sectors, order-0 folios (no CONFIG_BTRFS_EXPERIMENTAL)."""
    return FileSystem(
        "btrfs",
        MAX_LFS_FILESIZE,
        0,
        True,
        btrfs_aops,
        btrfs_buffered_write,
        filemap_fault,  # btrfs_file_vm_ops' .fault
    )
