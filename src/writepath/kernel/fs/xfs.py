"""xfs buffered writes through iomap — fs/xfs/xfs_file.c (v6.13–v6.18).

xfs does not use ``generic_perform_write()``: ``iomap_write_iter()`` (``writepath.kernel.fs.iomap``)
has a loop of the same shape which, as merged up to v6.18, still prefaults the source before
``iomap_write_begin()``. The same change as 665575cff098 was posted for iomap in 2025 but not
merged, so every design runs the prefaulting loop on xfs except ``proposed``, which applies that
posting (``IOMAP_LOOP`` in ``writepath.kernel.filemap``; ``../shared/reference/kernel-code.md`` §8).

Simplifications: ``xfs_file_write_checks()`` is ``generic_write_checks()`` plus the zeroing of the
old EOF block tail; post-EOF delalloc blocks are not punched out on a short write; blocks are
4 KiB.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.buffer import zero_partial_block
from writepath.kernel.constants import MAX_LFS_FILESIZE, MAX_PAGECACHE_ORDER, PAGE_SIZE
from writepath.kernel.filemap import IOMAP_LOOP, generic_write_checks
from writepath.kernel.fs.iomap import (
    iomap_file_buffered_write,
    iomap_read_folio,
    iomap_write_delalloc_release,
)
from writepath.kernel.fs.iomap_iter import (
    IOMAP_WRITE,
    IOMAP_ZERO,
    Iomap,
    IomapIter,
    iomap_iter,
    iomap_iter_advance,
    iomap_length,
)
from writepath.kernel.iov_iter import IovIter
from writepath.kernel.mm import VMA
from writepath.kernel.pagecache import AddressSpaceOperations, Folio
from writepath.kernel.readahead import READAHEAD_WALKS, filemap_fault
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import (
    FileSystem,
    Inode,
    Kiocb,
    file_modified,
    inode_lock,
    inode_unlock,
)

BLOCK_SHIFT: Final = 12
#: The most a new delalloc reservation maps in one ->iomap_begin: 1024 pages.
XFS_MAX_DELALLOC_MAP: Final = 1024 * PAGE_SIZE


def _has_data(inode: Inode, block: int) -> bool:
    """A block the data fork maps: written on disk, or reserved as delalloc by a write."""
    return block in inode.disk or block in inode.delalloc


def _next_data(inode: Inode, block: int) -> int | None:
    """The first mapped block after ``block``, None if there is none."""
    after = [b for b in (*inode.disk, *inode.delalloc) if b > block]
    return min(after) if after else None


def xfs_buffered_write_iomap_begin(
    task: Task, inode: Inode, pos: int, length: int, flags: tuple[str, ...]
) -> Iomap:
    """xfs_buffered_write_iomap_begin() (fs/xfs/xfs_iomap.c): the extent of the data fork
    containing ``pos`` if there is one; else, for zeroing, the hole up to the next extent, and
    for a write a new delalloc reservation over the hole, up to the end of the write (capped
    at 1024 pages) or the next extent (IOMAP_F_NEW).

    Simplified: written and delalloc extents that touch are one extent here (the kernel keeps
    them apart), and there is no speculative preallocation beyond EOF (small files get none).
    """
    first = pos >> BLOCK_SHIFT
    end_fsb = (pos + length + (1 << BLOCK_SHIFT) - 1) >> BLOCK_SHIFT
    if _has_data(inode, first):
        start, stop = first, first + 1
        while _has_data(inode, start - 1):
            start -= 1
        while _has_data(inode, stop):
            stop += 1
        return Iomap(start << BLOCK_SHIFT, (stop - start) << BLOCK_SHIFT)
    nxt = _next_data(inode, first)
    stop = end_fsb if nxt is None else min(nxt, end_fsb)
    if IOMAP_ZERO in flags:
        return Iomap(first << BLOCK_SHIFT, (stop - first) << BLOCK_SHIFT)
    # A new reservation maps at most 1024 pages (MAX_WRITEBACK_PAGES), whatever the length.
    capped = min(length, XFS_MAX_DELALLOC_MAP)
    end_fsb = (pos + capped + (1 << BLOCK_SHIFT) - 1) >> BLOCK_SHIFT
    stop = end_fsb if nxt is None else min(nxt, end_fsb)
    inode.delalloc.update(range(first, stop))
    return Iomap(first << BLOCK_SHIFT, (stop - first) << BLOCK_SHIFT, new=True)


def xfs_buffered_write_iomap_end(
    task: Task,
    inode: Inode,
    pos: int,
    length: int,
    written: int,
    flags: tuple[str, ...],
    iomap: Iomap,
) -> None:
    """xfs_buffered_write_iomap_end(): give back the delalloc blocks this mapping reserved and
    the write did not reach, from the block after the last written byte (the first block if
    nothing was written, iomap_last_written_block()) to the end of the mapping's last block:
    iomap_write_delalloc_release() keeps those under dirty blocks of the page cache."""
    if not iomap.new or IOMAP_WRITE not in flags:
        return
    bs = 1 << BLOCK_SHIFT
    start_byte = (pos + written + bs - 1) & ~(bs - 1) if written else pos & ~(bs - 1)
    end_byte = (pos + length + bs - 1) & ~(bs - 1)
    if start_byte >= end_byte:
        return
    iomap_write_delalloc_release(
        task, inode, start_byte, end_byte, xfs_buffered_write_delalloc_punch
    )


def xfs_buffered_write_delalloc_punch(inode: Inode, offset: int, length: int) -> None:
    """xfs_buffered_write_delalloc_punch() → xfs_bmap_punch_delalloc_range(): remove the
    delalloc blocks of [offset, offset + length), rounded out to whole blocks."""
    first = offset >> BLOCK_SHIFT
    end = (offset + length + (1 << BLOCK_SHIFT) - 1) >> BLOCK_SHIFT
    for block in range(first, end):
        inode.delalloc.discard(block)


def xfs_zero_range(task: Task, inode: Inode, pos: int, length: int) -> None:
    """xfs_zero_range() → iomap_zero_range(): walk the mappings of [pos, pos + length) with
    IOMAP_ZERO. Holes need nothing; the block tail of old data past EOF was zeroed by
    ``zero_partial_block()`` already, so each mapping is passed over whole."""
    it = IomapIter(inode, pos, length, (IOMAP_ZERO,))
    while iomap_iter(task, it, xfs_buffered_write_iomap_begin, None) > 0:
        iomap_iter_advance(it, iomap_length(it))


def xfs_file_buffered_write(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """xfs_file_buffered_write(): the iolock, xfs_file_write_checks() (the generic checks, then
    zeroing of the old EOF block tail when writing beyond EOF), the iomap loop in the form the
    kernel's design gives it (``IOMAP_LOOP``)."""
    inode = iocb.ki_filp.f_inode
    # xfs_ilock(XFS_IOLOCK_EXCL) is down_write() of the VFS inode's i_rwsem: inode_lock().
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        # xfs_file_write_checks() -> kiocb_modified() -> file_modified_flags().
        err = file_modified(task, iocb.ki_filp)
        if err:
            ret = err
    if ret > 0:
        if iocb.ki_pos > inode.i_size:
            zero_partial_block(inode, inode.i_size, iocb.ki_pos)
            xfs_zero_range(task, inode, inode.i_size, iocb.ki_pos - inode.i_size)
        copy_first = IOMAP_LOOP[task.kernel.design] == "copy-first"
        ret = yield from iomap_file_buffered_write(
            task,
            iocb,
            from_,
            copy_first,
            xfs_buffered_write_iomap_begin,
            xfs_buffered_write_iomap_end,
        )
    inode_unlock(task, inode)
    return ret


def xfs_filemap_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    return (yield from filemap_fault(task, vma, pgoff))


def xfs_read_iomap_begin(
    task: Task, inode: Inode, pos: int, length: int, flags: tuple[str, ...]
) -> Iomap:
    """xfs_read_iomap_begin() (fs/xfs/xfs_iomap.c): the extent or the hole at ``pos``, up to
    the end of the range asked (xfs_bmapi_read() over [offset_fsb, end_fsb)). Simplified as
    the write side is: written and delalloc blocks that touch are one extent."""
    first = pos >> BLOCK_SHIFT
    end_fsb = (pos + length + (1 << BLOCK_SHIFT) - 1) >> BLOCK_SHIFT
    mapped = _has_data(inode, first)
    stop = first + 1
    while stop < end_fsb and _has_data(inode, stop) == mapped:
        stop += 1
    return Iomap(first << BLOCK_SHIFT, (stop - first) << BLOCK_SHIFT)


def xfs_vm_readahead(task: Task, inode: Inode, pos: int, length: int) -> None:
    """xfs_vm_readahead() → iomap_readahead() (fs/iomap/buffered-io.c, v6.18): walk the
    mappings of the range with no flags, one iomap_iter() per mapping and a last one that ends
    the walk. The model reads the folios themselves with ``read_folio`` afterwards."""
    it = IomapIter(inode, pos, length, ())
    while iomap_iter(task, it, xfs_read_iomap_begin, None) > 0:
        iomap_iter_advance(it, iomap_length(it))


# No ->write_begin/->write_end: xfs writes through iomap_write_iter() (fs/xfs/xfs_aops.c).
xfs_aops = AddressSpaceOperations("xfs_aops", None, None, iomap_read_folio)
READAHEAD_WALKS[xfs_aops.name] = xfs_vm_readahead


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
