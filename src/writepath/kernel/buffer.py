"""Buffer heads as the write path uses them — fs/buffer.c (v6.12–v6.18).

``block_write_end``, ``folio_zero_new_buffers`` and ``block_commit_write``, over the per-block
state kept in ``Folio.bh_uptodate``/``Folio.bh_new``. In this model a block is one page (4 KiB
blocks on 4 KiB pages, the default of mkfs.ext4 on any disk of useful size), so block k of a
folio is page k. Dirty and mapped buffer bits are not kept: nothing here writes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from writepath.kernel.constants import PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import (
    Folio,
    folio_mark_uptodate,
    folio_pos,
    folio_zero_range,
)
from writepath.kernel.task import Task

if TYPE_CHECKING:
    from writepath.kernel.vfs import Inode


def folio_create_empty_buffers(folio: Folio) -> None:
    """Attach buffers to a folio that has none: uptodate iff the folio is."""
    if folio.bh_uptodate is None:
        folio.bh_uptodate = [folio.uptodate] * folio.nr_pages
        folio.bh_new = [False] * folio.nr_pages


def folio_zero_new_buffers(task: Task, folio: Folio, start: int, end: int) -> None:
    """Zero the part of [start, end) that lies in buffers still marked new, and make those
    buffers uptodate: they now hold zeros rather than stale memory."""
    assert folio.bh_new is not None and folio.bh_uptodate is not None
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if folio.bh_new[k] and block_end > start and block_start < end:
            if not folio.uptodate:
                lo, hi = max(start, block_start), min(end, block_end)
                folio_zero_range(folio, lo, hi - lo)
                folio.bh_uptodate[k] = True
            folio.bh_new[k] = False


def block_commit_write(task: Task, folio: Folio, start: int, end: int) -> None:
    """Mark the buffers of [start, end) uptodate; the folio too if no buffer is left behind."""
    assert folio.bh_new is not None and folio.bh_uptodate is not None
    partial = False
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if block_end <= start or block_start >= end:
            if not folio.bh_uptodate[k]:
                partial = True
        else:
            folio.bh_uptodate[k] = True
        folio.bh_new[k] = False
    if not partial:
        folio_mark_uptodate(task, folio)


def block_write_end(task: Task, pos: int, len: int, copied: int, folio: Folio) -> int:
    """Commit a copy into a folio with buffers. A short copy into a folio that is not uptodate
    is refused whole (returns 0): a partly written block could be wiped out by a later read of the
    rest of the block, so the caller must redo the whole thing."""
    start = pos - folio_pos(folio)
    if copied < len:
        if not folio.uptodate:
            copied = 0
        folio_zero_new_buffers(task, folio, start + copied, start + len)
    block_commit_write(task, folio, start, start + copied)
    return copied


def read_block(inode: Inode, folio: Folio, k: int) -> None:
    """Read block k of the folio from the disk; a block the disk does not have reads as zeros."""
    data = inode.disk.get(folio.index + k)
    start = k * PAGE_SIZE
    folio.data[start : start + PAGE_SIZE] = data if data is not None else bytes(PAGE_SIZE)


def block_read_full_folio(task: Task, folio: Folio) -> int:
    """Read every block of the folio that is not uptodate yet, then mark it all uptodate.
    ext4_read_folio() ends here; iomap_read_folio() does the same over its per-block state."""
    inode = folio.mapping.host
    for k in range(folio.nr_pages):
        if folio.bh_uptodate is None or not folio.bh_uptodate[k]:
            read_block(inode, folio, k)
    if folio.bh_uptodate is not None:
        folio.bh_uptodate = [True] * folio.nr_pages
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
    folio.data[lo:hi] = bytes(hi - lo)
