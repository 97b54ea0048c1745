"""iomap buffered writes — fs/iomap/buffered-io.c (v6.18).

Function by function: ``ifs_alloc``, ``iomap_set_range_uptodate``, ``iomap_set_range_dirty``,
``iomap_adjust_read_range``, ``iomap_block_needs_zeroing``, ``__iomap_write_begin``,
``iomap_write_begin``, ``__iomap_write_end``, ``iomap_write_end``, ``iomap_write_failed``,
``iomap_write_iter`` and ``iomap_read_folio``. The write-side functions were read in the
6.17/6.18 form (``iomap_write_begin(iter, write_ops, &folio, &offset, &bytes)``,
``iomap_trim_folio_range()``); 6.18 changed the read side's plumbing, not what it does.

Per-block state is ``struct iomap_folio_state`` (``IomapFolioState`` in ``folio->private``): a
per-block uptodate and dirty bitmap, allocated only for a folio of more than one block, exactly as
``ifs_alloc()`` does; a single-block folio has none and its uptodate flag is the folio's.

The flaw this reproduces (seen on this machine's 6.18): ``__iomap_write_begin()`` zeroes only the
parts of a partly covered new block range outside [from, to), yet marks the *whole* range
uptodate with ``iomap_set_range_uptodate()``. If that makes the folio uptodate,
``__iomap_write_end()`` accepts a short copy, and the bytes the copy did not reach keep whatever
the freshly allocated (uncleared) folio held.

The mappings are walked with ``iomap_iter()`` (``writepath.kernel.fs.iomap_iter``) over the
filesystem's ``iomap_ops``. Simplified: within a mapping the type is decided block by block from
the model's disk
(a block with data on disk below EOF is IOMAP_MAPPED, anything else needs zeroing, as a
delalloc or hole mapping does); no IOMAP_NOWAIT, IOMAP_UNSHARE, inline data or buffer-head
mappings; ``iomap_write_failed()`` drops whole folios beyond EOF and does not zero a partial one;
reads are synchronous; blocks are 4 KiB (one page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.buffer import read_block
from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.fs.iomap_iter import (
    IOMAP_WRITE,
    IomapBegin,
    IomapEnd,
    IomapIter,
    iomap_iter,
    iomap_iter_advance,
    iomap_length,
)
from writepath.kernel.iov_iter import (
    IovIter,
    copy_folio_from_iter_atomic,
    fault_in_iov_iter_readable,
    iov_iter_revert,
)
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    BlockState,
    Folio,
    __filemap_get_folio,
    balance_dirty_pages_ratelimited_flags,
    fgf_set_order,
    filemap_remove_folio,
    folio_mark_dirty,
    folio_mark_uptodate,
    folio_pos,
    folio_size,
    folio_unlock,
    folio_zero_range,
    folio_zero_segments,
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
from writepath.kernel.vfs import Inode, Kiocb, i_size_write

EFAULT: Final = 14
BLOCK_SHIFT: Final = PAGE_SHIFT
BLOCK_SIZE: Final = 1 << BLOCK_SHIFT


class IomapFolioState(BlockState):
    """struct iomap_folio_state: per-block uptodate and dirty bits of one folio."""

    __slots__ = ("dirty",)

    def __init__(self, nr_blocks: int, uptodate: bool, dirty: bool) -> None:
        super().__init__([uptodate] * nr_blocks)
        self.dirty = [dirty] * nr_blocks


def i_blocks_per_folio(folio: Folio) -> int:
    return folio_size(folio) >> BLOCK_SHIFT


def folio_ifs(folio: Folio) -> IomapFolioState | None:
    private = folio.private
    return private if isinstance(private, IomapFolioState) else None


def ifs_alloc(folio: Folio) -> IomapFolioState | None:
    """The folio's state, allocated on first use; None for a folio of a single block. A new
    one starts uptodate (dirty) everywhere if the folio already is."""
    ifs = folio_ifs(folio)
    nr_blocks = i_blocks_per_folio(folio)
    if ifs is not None or nr_blocks <= 1:
        return ifs
    ifs = IomapFolioState(nr_blocks, folio.uptodate, folio.dirty)
    folio.private = ifs
    return ifs


def iomap_set_range_uptodate(task: Task, folio: Folio, off: int, len: int) -> None:
    """Mark the blocks of [off, off + len) uptodate (ifs_set_range_uptodate()); the folio
    becomes uptodate when all its blocks are, or at once when it has no per-block state."""
    if folio.uptodate:
        return
    uptodate = True
    ifs = folio_ifs(folio)
    if ifs is not None:
        first = off >> BLOCK_SHIFT
        last = (off + len - 1) >> BLOCK_SHIFT
        for k in range(first, last + 1):
            ifs.uptodate[k] = True
        uptodate = all(ifs.uptodate)
    if uptodate:
        folio_mark_uptodate(task, folio)


def iomap_set_range_dirty(folio: Folio, off: int, len: int) -> None:
    """Mark the blocks of [off, off + len) dirty in the per-block state, if there is one."""
    ifs = folio_ifs(folio)
    if ifs is None or len == 0:
        return
    for k in range(off >> BLOCK_SHIFT, ((off + len - 1) >> BLOCK_SHIFT) + 1):
        ifs.dirty[k] = True


def iomap_adjust_read_range(
    inode: Inode, folio: Folio, pos: int, length: int
) -> tuple[int, int, int]:
    """The part of [pos, pos + length) inside the folio that still needs reading or zeroing:
    leading uptodate blocks skipped, the range cut at the first uptodate block after that, and
    at the block holding i_size when the range spans it. Returns (pos, poff, plen): the file
    position and folio offset where that part starts, and its length."""
    isize = inode.i_size
    orig_pos = pos
    poff = offset_in_folio(folio, pos)
    plen = min(folio_size(folio) - poff, length)
    orig_plen = plen
    first = poff >> BLOCK_SHIFT
    last = (poff + plen - 1) >> BLOCK_SHIFT
    ifs = folio_ifs(folio)
    if ifs is not None:
        i = first
        while i <= last:
            if not ifs.uptodate[i]:
                break
            pos += BLOCK_SIZE
            poff += BLOCK_SIZE
            plen -= BLOCK_SIZE
            first += 1
            i += 1
        i += 1
        while i <= last:
            if ifs.uptodate[i]:
                plen -= (last - i + 1) * BLOCK_SIZE
                last = i - 1
                break
            i += 1
    if orig_pos <= isize < orig_pos + orig_plen:
        end = offset_in_folio(folio, isize - 1) >> BLOCK_SHIFT
        if first <= end < last:
            plen -= (last - end) * BLOCK_SIZE
    return pos, poff, plen


def iomap_block_needs_zeroing(inode: Inode, pos: int) -> bool:
    """True unless the block at ``pos`` is mapped to written data on disk (not new) and lies
    below EOF: a hole, a delayed allocation or a block past EOF reads as zeros."""
    return (pos >> PAGE_SHIFT) not in inode.disk or pos >= inode.i_size


def __iomap_write_begin(task: Task, inode: Inode, pos: int, len: int, folio: Folio) -> int:
    """Make the folio ready for a write of [pos, pos + len) (fs/iomap/buffered-io.c, v6.18).

    A write covering the whole folio needs nothing. Otherwise, for each stretch of blocks not
    yet uptodate that the write covers only in part, either read it or zero the part outside
    [from, to) — and mark the *whole* stretch uptodate, the bytes the copy is yet to write
    included.
    """
    block_start = pos & ~(BLOCK_SIZE - 1)
    block_end = (pos + len + BLOCK_SIZE - 1) & ~(BLOCK_SIZE - 1)
    from_ = offset_in_folio(folio, pos)
    to = from_ + len
    if pos <= folio_pos(folio) and pos + len >= folio_pos(folio) + folio_size(folio):
        return 0
    ifs_alloc(folio)
    if folio.uptodate:
        return 0
    while True:
        block_start, poff, plen = iomap_adjust_read_range(
            inode, folio, block_start, block_end - block_start
        )
        if plen == 0:
            break
        if (from_ <= poff or from_ >= poff + plen) and (to <= poff or to >= poff + plen):
            pass  # wholly overwritten (or untouched): nothing to read or zero
        else:
            if iomap_block_needs_zeroing(inode, block_start):
                folio_zero_segments(folio, poff, from_, to, poff + plen)
            else:
                for k in range(poff >> BLOCK_SHIFT, (poff + plen) >> BLOCK_SHIFT):
                    read_block(inode, folio, k)
            iomap_set_range_uptodate(task, folio, poff, plen)
        block_start += plen
        if block_start >= block_end:
            break
    return 0


def iomap_write_begin(task: Task, inode: Inode, pos: int, len: int) -> Sleeps[tuple[Folio, int]]:
    """__iomap_get_folio() (a folio sized for ``len``, locked), iomap_trim_folio_range(), then
    __iomap_write_begin(). Returns the folio and ``len`` trimmed to it."""
    task.emit((tp.ENTER, task.pid, "iomap_write_begin", pos))
    folio = yield from __filemap_get_folio(
        task, inode.i_mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN, fgf_set_order(len)
    )
    assert folio is not None
    len = min(len, folio_size(folio) - offset_in_folio(folio, pos))
    __iomap_write_begin(task, inode, pos, len, folio)
    task.emit((tp.EXIT, task.pid, "iomap_write_begin", 0))
    return folio, len


def __iomap_write_end(task: Task, pos: int, len: int, copied: int, folio: Folio) -> bool:
    """Refuse a short copy into a folio that is not uptodate; otherwise mark the whole of
    [pos, pos + len) uptodate, the copied part dirty, and the folio dirty. A short copy into
    an uptodate folio is accepted as it is: the bytes it did not reach stay what they were."""
    if copied < len and not folio.uptodate:
        return False
    off = offset_in_folio(folio, pos)
    iomap_set_range_uptodate(task, folio, off, len)
    iomap_set_range_dirty(folio, off, copied)
    folio_mark_dirty(task, folio)
    return True


def iomap_write_end(task: Task, pos: int, len: int, copied: int, folio: Folio) -> bool:
    """iomap_write_end() for a block mapping without buffer heads: __iomap_write_end()."""
    task.emit((tp.ENTER, task.pid, "iomap_write_end", copied))
    ok = __iomap_write_end(task, pos, len, copied, folio)
    task.emit((tp.EXIT, task.pid, "iomap_write_end", copied if ok else 0))
    return ok


def iomap_write_failed(task: Task, inode: Inode, pos: int, len: int) -> None:
    """Drop page-cache folios wholly beyond EOF that a failed write instantiated
    (truncate_pagecache_range(inode, max(pos, i_size), pos + len - 1))."""
    if pos + len > inode.i_size:
        first = (max(pos, inode.i_size) + PAGE_SIZE - 1) >> PAGE_SHIFT
        last = (pos + len - 1) >> PAGE_SHIFT
        for index in range(first, last + 1):
            folio = inode.i_mapping.i_pages.get(index)
            if folio is not None and folio.index >= first and folio.owner is None:
                filemap_remove_folio(task, folio)


def iomap_write_iter(task: Task, it: IomapIter, i: IovIter, copy_first: bool) -> Sleeps[int]:
    """iomap_write_iter() (v6.18): write what the current mapping covers of the iterator.

    ``copy_first=False`` is the loop as merged through v6.18: prefault the chunk, then copy
    atomically. ``copy_first=True`` is the same loop with the change of 665575cff098 applied,
    as posted for iomap in 2025 (Jinliang Zheng's v2 of 31 Jul 2025, after Dave Hansen's of
    Jan 2025; not merged): no prefault; after a copy write_end accepted nothing and that copied
    nothing, fault the source in with the folio unlocked and fail with EFAULT if none of it
    could be. A chunk never reaches past the mapping (``iomap_length()``); the loop ends with the
    mapping. Returns 0 if anything was written, else the status, as the kernel's does.
    """
    inode = it.inode
    mapping = inode.i_mapping
    # Each mapping is a loop of its own: a pass that failed at the end of the previous mapping
    # (and returned) is not a retry of this one.
    note_loop_start(task)
    chunk = mapping_max_folio_size(mapping)
    total_written = 0
    status = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        pos = it.pos
        offset = pos & (chunk - 1)
        nbytes = min(chunk - offset, nbytes, iomap_length(it))
        # Dirty throttling at the top of every pass, after the retry label (bdp_flags 0: not
        # IOCB_NOWAIT, so it never fails here).
        balance_dirty_pages_ratelimited_flags(task, mapping)
        if not copy_first and (yield from fault_in_iov_iter_readable(task, i, nbytes)) == nbytes:
            status = -EFAULT
            break
        folio, nbytes = yield from iomap_write_begin(task, inode, pos, nbytes)
        offset = offset_in_folio(folio, pos)
        copied = copy_folio_from_iter_atomic(task, folio, offset, nbytes, i)
        written = copied if iomap_write_end(task, pos, nbytes, copied, folio) else 0
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
            if copy_first and (yield from fault_in_iov_iter_readable(task, i, nbytes)) == nbytes:
                status = -EFAULT
                break
        else:
            note_progress(task)
            total_written += written
            iomap_iter_advance(it, written)
        if not i.count or not iomap_length(it):
            break
    return 0 if total_written else status


def iomap_file_buffered_write(
    task: Task,
    iocb: Kiocb,
    i: IovIter,
    copy_first: bool,
    begin: IomapBegin,
    end: IomapEnd | None,
) -> Sleeps[int]:
    """iomap_file_buffered_write() (v6.18): walk the filesystem's mappings of the write with
    ``iomap_iter()`` (``begin``/``end`` are its ``iomap_ops``), writing each with
    ``iomap_write_iter()``; the bytes written if any, else the error."""
    task.emit((tp.ENTER, task.pid, "iomap_write_iter", i.count))
    note_loop_start(task)
    it = IomapIter(iocb.ki_filp.f_inode, iocb.ki_pos, i.count, (IOMAP_WRITE,))
    while (ret := iomap_iter(task, it, begin, end)) > 0:
        it.status = yield from iomap_write_iter(task, it, i, copy_first)
    written = it.pos - iocb.ki_pos
    if written > 0:
        iocb.ki_pos += written
        ret = written
    task.emit((tp.EXIT, task.pid, "iomap_write_iter", ret))
    return ret


def iomap_read_folio(task: Task, folio: Folio) -> int:
    """iomap_read_folio(): every block not yet uptodate is read from disk or, where the disk
    has nothing (or it lies past EOF), zeroed; then the folio is uptodate. Synchronous here."""
    inode = folio.mapping.host
    ifs = ifs_alloc(folio)
    for k in range(i_blocks_per_folio(folio)):
        if ifs is not None and ifs.uptodate[k]:
            continue
        block_pos = folio_pos(folio) + (k << BLOCK_SHIFT)
        if iomap_block_needs_zeroing(inode, block_pos):
            folio_zero_range(folio, k << BLOCK_SHIFT, BLOCK_SIZE)
        else:
            read_block(inode, folio, k)
        iomap_set_range_uptodate(task, folio, k << BLOCK_SHIFT, BLOCK_SIZE)
    folio_mark_uptodate(task, folio)
    return 0


Punch = Callable[[Inode, int, int], None]


def _block_has_data(inode: Inode, block: int) -> bool:
    """mapping_seek_hole_data()'s view of one block: cached in a folio that is uptodate, or
    whose per-block state says this block is (``->is_partially_uptodate``)."""
    folio = inode.i_mapping.i_pages.get(block)
    if folio is None:
        return False
    if folio.uptodate:
        return True
    ifs = folio_ifs(folio)
    return ifs is not None and ifs.uptodate[block - folio.index]


def iomap_write_delalloc_release(
    task: Task, inode: Inode, start_byte: int, end_byte: int, punch: Punch
) -> None:
    """iomap_write_delalloc_release() (fs/iomap/buffered-io.c, v6.18): punch out the delalloc
    reservation of [start_byte, end_byte) except under the *dirty* blocks of dirty folios that
    hold data below EOF. It walks the page cache's data ranges (SEEK_DATA/SEEK_HOLE up to
    min(i_size, end_byte)), punches everything before each dirty folio it meets, and inside a
    dirty folio with per-block state the blocks that are not dirty; the rest up to
    ``end_byte`` goes last. Blocks are pages here, so every range is block-aligned."""
    punch_start = start_byte
    scan_end = min(inode.i_size, end_byte)
    pages = inode.i_mapping.i_pages
    pos = start_byte
    while pos < scan_end:
        # SEEK_DATA, then SEEK_HOLE from there, both bounded by scan_end.
        block = pos >> PAGE_SHIFT
        while (block << PAGE_SHIFT) < scan_end and not _block_has_data(inode, block):
            block += 1
        data_start = max(pos, block << PAGE_SHIFT)
        if data_start >= scan_end:
            break
        while (block << PAGE_SHIFT) < scan_end and _block_has_data(inode, block):
            block += 1
        data_end = min(block << PAGE_SHIFT, scan_end)
        # iomap_write_delalloc_scan()
        at = data_start
        while at < data_end:
            folio = pages.get(at >> PAGE_SHIFT)
            if folio is None:
                at = ((at >> PAGE_SHIFT) + 1) << PAGE_SHIFT
                continue
            folio_end = folio_pos(folio) + folio_size(folio)
            if folio.dirty:
                if at > punch_start:
                    punch(inode, punch_start, at - punch_start)
                ifs = folio_ifs(folio)
                if ifs is not None:
                    last = min(data_end - 1, folio_end - 1)
                    first_blk = offset_in_folio(folio, at) >> BLOCK_SHIFT
                    last_blk = offset_in_folio(folio, last) >> BLOCK_SHIFT
                    for k in range(first_blk, last_blk + 1):
                        if not ifs.dirty[k]:
                            punch(inode, folio_pos(folio) + (k << BLOCK_SHIFT), BLOCK_SIZE)
                punch_start = min(data_end, folio_end)
            at = folio_end
        pos = data_end
    if punch_start < end_byte:
        punch(inode, punch_start, end_byte - punch_start)
