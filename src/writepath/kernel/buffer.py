"""Buffer heads as the write path uses them — fs/buffer.c (v6.18).

``folio_create_empty_buffers``, ``__block_write_begin_int``, ``folio_zero_new_buffers``,
``block_commit_write``, ``block_write_end`` and ``block_read_full_folio``, over the per-block
state a folio's buffer heads keep (``BufferHeads`` in ``folio->private``): uptodate, new,
mapped, delay, dirty and (for data=journal) jbddirty. In this model a block is one page (4 KiB
blocks on 4 KiB pages, the default of mkfs.ext4 on any disk of useful size), so block k of a
folio is page k.

Simplified: reads are synchronous (``bh_read_nowait()`` followed by ``wait_on_buffer()`` is one
call), there is no I/O error, no writeback (dirty is recorded, never cleared), and the "disk" is
``Inode.disk``. The get_block callback maps one block: it sets mapped (and new and delay for a
block it has just reserved).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import (
    BlockState,
    Folio,
    folio_initialized,
    folio_mark_uptodate,
    folio_pos,
    folio_zero_range,
    folio_zero_segments,
)
from writepath.kernel.task import Task

if TYPE_CHECKING:
    from writepath.kernel.vfs import Inode


class BufferHeads(BlockState):
    """The ring of ``struct buffer_head`` of one folio, as per-block flag lists
    (BH_Uptodate, BH_New, BH_Mapped, BH_Delay, BH_Dirty, and jbd2's BH_JBDDirty).

    BH_Dirty means "write this block to its place on disk"; BH_JBDDirty (include/linux/jbd2.h)
    means "this block belongs to a transaction: the journal writes it". A journalled block must
    only ever be the second: jbd2 warns when it finds the first on a buffer it files
    (warn_dirty_buffer() in fs/jbd2/transaction.c)."""

    __slots__ = ("delay", "dirty", "jbddirty", "mapped", "new")

    def __init__(self, nr_blocks: int, uptodate: bool) -> None:
        super().__init__([uptodate] * nr_blocks)
        self.new = [False] * nr_blocks
        self.mapped = [False] * nr_blocks
        self.delay = [False] * nr_blocks
        self.dirty = [False] * nr_blocks
        self.jbddirty = [False] * nr_blocks


#: get_block(inode, block index in the file, buffers, k): map buffer k; 0 or -errno.
GetBlock = Callable[["Inode", int, BufferHeads, int], int]


def folio_buffers(folio: Folio) -> BufferHeads | None:
    private = folio.private
    return private if isinstance(private, BufferHeads) else None


def folio_create_empty_buffers(folio: Folio) -> BufferHeads:
    """Attach buffers to a folio that has none: uptodate iff the folio is (fs/buffer.c
    ``folio_create_empty_buffers()``, reached through ``folio_create_buffers()``)."""
    bhs = folio_buffers(folio)
    if bhs is None:
        bhs = BufferHeads(folio.nr_pages, folio.uptodate)
        folio.private = bhs
    return bhs


def read_block(inode: Inode, folio: Folio, k: int) -> None:
    """Read block k of the folio from the disk; a block the disk does not have reads as zeros.
    The DMA writes every byte of the block: none of it is uninitialized afterwards."""
    data = inode.disk.get(folio.index + k)
    start = k * PAGE_SIZE
    folio.data[start : start + PAGE_SIZE] = data if data is not None else bytes(PAGE_SIZE)
    folio_initialized(folio, start, start + PAGE_SIZE)


def __block_write_begin_int(
    task: Task,
    folio: Folio,
    pos: int,
    len: int,
    get_block: GetBlock,
    defer_new_dirty: bool = False,
) -> int:
    """Prepare the blocks of [pos, pos + len) for a write (fs/buffer.c, v6.18).

    Blocks outside the range only inherit the folio's uptodate flag. A block in the range that
    is not mapped yet goes to ``get_block``; if that made it new (just allocated or reserved),
    the part of it the write will not cover is zeroed, in a folio that is not uptodate (in an
    uptodate one it is simply uptodate, no longer new, and dirty). A mapped block that is not
    uptodate, not delayed and only partly covered is read.

    ``defer_new_dirty`` is ext4's own copy of this loop, ext4_block_write_begin()
    (fs/ext4/inode.c, v6.18): a new block of an uptodate folio is only made uptodate; it stays
    new and is left clean, for write_end (or the zeroing of new buffers) to dirty the way the
    file's data mode wants: a data=journal block must never get BH_Dirty.
    """
    inode = folio.mapping.host
    bhs = folio_create_empty_buffers(folio)
    start = pos - folio_pos(folio)
    end = start + len
    err = 0
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if block_end <= start or block_start >= end:
            if folio.uptodate:
                bhs.uptodate[k] = True
            continue
        bhs.new[k] = False
        if not bhs.mapped[k]:
            err = get_block(inode, folio.index + k, bhs, k)
            if err:
                break
            if bhs.new[k]:
                if folio.uptodate and defer_new_dirty:
                    bhs.uptodate[k] = True
                    continue
                if folio.uptodate:
                    bhs.new[k] = False
                    bhs.uptodate[k] = True
                    bhs.dirty[k] = True
                    continue
                if block_end > end or block_start < start:
                    folio_zero_segments(folio, end, block_end, block_start, start)
                continue
        if folio.uptodate:
            bhs.uptodate[k] = True
            continue
        if not bhs.uptodate[k] and not bhs.delay[k] and (block_start < start or block_end > end):
            read_block(inode, folio, k)
            bhs.uptodate[k] = True
    if err:
        folio_zero_new_buffers(task, folio, start, end)
    return err


def folio_zero_new_buffers(task: Task, folio: Folio, start: int, end: int) -> None:
    """For each buffer still new that overlaps [start, end): in a folio that is not uptodate,
    zero its part of the range and make it uptodate (it now holds zeros, not stale memory);
    then it is no longer new, and dirty (fs/buffer.c, v6.18)."""
    bhs = folio_buffers(folio)
    if bhs is None:
        return
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if bhs.new[k] and block_end > start and block_start < end:
            if not folio.uptodate:
                lo, hi = max(start, block_start), min(end, block_end)
                folio_zero_range(folio, lo, hi - lo)
                bhs.uptodate[k] = True
            bhs.new[k] = False
            bhs.dirty[k] = True


def block_commit_write(task: Task, folio: Folio, start: int, end: int) -> None:
    """Mark the buffers of [start, end) uptodate and dirty, clear every new flag; the folio
    becomes uptodate if no buffer outside the range is left behind (fs/buffer.c, v6.18)."""
    bhs = folio_buffers(folio)
    if bhs is None:
        return
    partial = False
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if block_end <= start or block_start >= end:
            if not bhs.uptodate[k]:
                partial = True
        else:
            bhs.uptodate[k] = True
            bhs.dirty[k] = True
        bhs.new[k] = False
    if not partial:
        folio_mark_uptodate(task, folio)


def block_write_end(task: Task, pos: int, len: int, copied: int, folio: Folio) -> int:
    """Commit a copy into a folio with buffers (fs/buffer.c, v6.18). A short copy into a folio
    that is not uptodate is refused whole (returns 0): a partly written block could be wiped
    out by a later read of the rest of the block, so the caller must redo the whole thing. The
    new buffers the copy did not reach are zeroed either way."""
    start = pos - folio_pos(folio)
    if copied < len:
        if not folio.uptodate:
            copied = 0
        folio_zero_new_buffers(task, folio, start + copied, start + len)
    block_commit_write(task, folio, start, start + copied)
    return copied


def block_read_full_folio(task: Task, folio: Folio) -> int:
    """Read every buffer of the folio that is not uptodate (a mapped one from the disk, an
    unmapped one — a hole — as zeros), then mark the folio uptodate (fs/buffer.c, v6.18;
    ext4_read_folio() ends here). Synchronous in this model."""
    inode = folio.mapping.host
    bhs = folio_create_empty_buffers(folio)
    for k in range(folio.nr_pages):
        if not bhs.uptodate[k]:
            read_block(inode, folio, k)
            bhs.uptodate[k] = True
    folio_mark_uptodate(task, folio)
    return 0


def zero_partial_block(inode: Inode, old_size: int, pos: int) -> None:
    """Zero the cached tail of the old last block, from the old EOF up to ``pos``
    (ext4_zero_partial_blocks(), and the EOF zeroing of xfs_file_write_checks())."""
    if not old_size & (PAGE_SIZE - 1):
        return
    folio = inode.i_mapping.i_pages.get(old_size >> PAGE_SHIFT)
    if folio is None:
        return
    block_end = (old_size | (PAGE_SIZE - 1)) + 1
    lo = old_size - folio_pos(folio)
    hi = min(pos, block_end) - folio_pos(folio)
    folio_zero_segments(folio, lo, hi, 0, 0)
