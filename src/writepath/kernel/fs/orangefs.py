"""orangefs — fs/orangefs/inode.c and fs/orangefs/file.c (v6.18), and its bug of 2025.

orangefs does no read-modify-write: write_begin neither reads nor zeroes the folio. Instead each
folio remembers in ``folio->private`` the one byte range of it that writes put there and the
server does not have yet (``struct orangefs_write_range``: pos, len, and the writer's uid and
gid, not modelled: every task here is one user). A write contiguous with the range extends it;
any other write first launders the folio (writes the range to the server, synchronously) and
starts a new range. Writeback sends exactly the range, clipped to i_size, and warns if the range
does not start inside the file (``orangefs_writepage_locked()``).

The bug (facts.md §3): write_begin records the whole ``len`` it was asked for, but write_end
accepts a short copy as it is and never takes back from the range what was not copied. A zero
copy at EOF leaves a range that starts at i_size; the retry's write_begin finds a range it cannot
extend and launders it, and writeback warns (xfstests generic/010 hit that warning once v6.14 made
zero copies common). Fixed by 219bf6edd7ef. ``orangefs_write_end()`` is the fixed form as the
model has it: a short copy takes the bytes it did not write back out of the range, and a range
left empty is dropped with nothing to send (the folio is not dirtied for it), which keeps the
range to bytes the file holds. The text of 219bf6edd7ef
was not available to this model's author: the fixed form restores the invariant the warning
checks, by the least change to write_end; it is not a copy of that commit.
``orangefs_write_end_2025()`` is write_end as in v6.14–v6.15, before the fix.

Both forms share write_end's "fully written page" branch: a zero copy of a whole page into a
folio that is not uptodate zeroes it and marks it uptodate. Over a file page that is on the
server but not cached, an EFAULT write therefore leaves a page of zeros in the cache (the
explorer reports efault-after-copy for it under v6.14, where such zero copies happen alone).
What 219bf6edd7ef does about that branch is not known here; the model keeps the branch as
v6.18 has it.

The server is ``Inode.disk`` (one page per block); its own file size is not modelled. A read
sees a folio that is not uptodate only after orangefs_read_folio() has laundered its range to
the server; the end state of a run (``writepath.run.file_state``) reads uptodate folios over the
disk and does not yet overlay such a pending range, so a run's file content is right only where
each written page ends uptodate (written whole, or from its start to EOF, as the race scenarios
do). Not
modelled either: the orangefs inode attribute cache and its revalidation, the bufmap, large
folios (orangefs has none), and writepages (nothing here runs writeback but laundering).
"""

from __future__ import annotations

from writepath.kernel import tracepoints as tp
from writepath.kernel.bug import WARN_ON
from writepath.kernel.constants import MAX_LFS_FILESIZE, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.filemap import filemap_fault, generic_file_write_iter
from writepath.kernel.mm import VMA
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpace,
    AddressSpaceOperations,
    BlockState,
    Folio,
    __filemap_get_folio,
    folio_initialized,
    folio_mark_dirty,
    folio_mark_uptodate,
    folio_pos,
    folio_size,
    folio_unlock,
    folio_zero_range,
    folio_zero_segments,
)
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import File, FileSystem, Inode, i_size_write


class OrangefsWriteRange(BlockState):
    """struct orangefs_write_range (fs/orangefs/orangefs-kernel.h): the file byte range
    [pos, pos + len) of the folio that writes put there and the server does not have yet.

    orangefs keeps no per-block uptodate state: the inherited per-block flags stay False, so
    whether a block holds valid data is the folio's uptodate flag alone."""

    __slots__ = ("len", "pos")

    def __init__(self, folio: Folio, pos: int, len: int) -> None:
        super().__init__([False] * folio.nr_pages)
        self.pos = pos
        self.len = len

    def __repr__(self) -> str:
        return f"<orangefs_write_range pos={self.pos} len={self.len}>"


def folio_write_range(folio: Folio) -> OrangefsWriteRange | None:
    private = folio.private
    return private if isinstance(private, OrangefsWriteRange) else None


def _send_to_server(inode: Inode, folio: Folio, off: int, wlen: int) -> None:
    """wait_for_direct_io(ORANGEFS_IO_WRITE) of bytes [off, off + wlen) of the folio: the
    server's blocks get those bytes, the rest of each block stays as the server had it."""
    base = folio_pos(folio)
    end = off + wlen
    pos = off
    while pos < end:
        index = pos >> PAGE_SHIFT
        block_end = min(end, (index + 1) << PAGE_SHIFT)
        block = bytearray(inode.disk.get(index, bytes(PAGE_SIZE)))
        lo = pos - (index << PAGE_SHIFT)
        block[lo : lo + block_end - pos] = folio.data[pos - base : block_end - base]
        inode.disk[index] = bytes(block)
        pos = block_end


def orangefs_writepage_locked(task: Task, folio: Folio) -> int:
    """orangefs_writepage_locked() (fs/orangefs/inode.c, v6.18): send the folio's write range,
    clipped to i_size, to the server, then drop the range. It warns if the range does not start
    inside the file or ends past it (an empty clip falls back to the whole range), and if the
    folio has no range at all (then the whole folio inside i_size is sent).

    Where the range starts beyond i_size the kernel's unsigned length wraps; the model sends
    the whole range then, as it does for an empty clip."""
    inode = folio.mapping.host
    size = inode.i_size
    where = "orangefs_writepage_locked"
    wr = folio_write_range(folio)
    if wr is not None:
        off = wr.pos
        wlen = size - off if off + wr.len > size else wr.len
        if wlen <= 0:
            wlen = wr.len
    else:
        WARN_ON(task, True, where, f"{inode.name}: folio {folio.index} has no write range")
        off = folio_pos(folio)
        wlen = min(folio_size(folio), size - off)
    WARN_ON(
        task,
        off == size or off + wlen > size,
        where,
        f"{inode.name}: write range [{off}, {off + wlen}) of folio {folio.index} "
        f"is not inside i_size {size}",
    )
    if wlen > 0:
        _send_to_server(inode, folio, off, wlen)
    folio.private = None
    return 0


def orangefs_launder_folio(task: Task, folio: Folio) -> int:
    """orangefs_launder_folio() (fs/orangefs/inode.c, v6.18): a dirty folio is cleaned
    (folio_clear_dirty_for_io()) and written at once by orangefs_writepage_locked()."""
    if folio.dirty:
        folio.dirty = False
        return orangefs_writepage_locked(task, folio)
    return 0


def orangefs_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """orangefs_write_begin() (fs/orangefs/inode.c, v6.18): a locked order-0 folio, neither
    read nor zeroed. A dirty folio without a range is laundered (should never happen); a range
    that ends at ``pos`` grows by ``len``; any other range is laundered first, then the folio
    gets the range [pos, pos + len)."""
    task.emit((tp.ENTER, task.pid, "orangefs_write_begin", pos))
    folio = yield from __filemap_get_folio(task, mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN)
    assert folio is not None
    ret = 0
    if folio.dirty and folio_write_range(folio) is None:
        ret = orangefs_launder_folio(task, folio)
    wr = folio_write_range(folio)
    if not ret and wr is not None:
        if wr.pos + wr.len == pos:
            wr.len += len
            task.emit((tp.EXIT, task.pid, "orangefs_write_begin", 0))
            return 0, folio, None
        ret = orangefs_launder_folio(task, folio)
    if ret:
        folio_unlock(task, folio)
        task.emit((tp.EXIT, task.pid, "orangefs_write_begin", ret))
        return ret, None, None
    folio.private = OrangefsWriteRange(folio, pos, len)
    task.emit((tp.EXIT, task.pid, "orangefs_write_begin", 0))
    return 0, folio, None


def _orangefs_write_end(
    task: Task,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    name: str,
    dirty: bool = True,
) -> int:
    """The write_end both forms share (fs/orangefs/inode.c, v6.18): accept the copy whatever
    it is; i_size = pos + copied if larger; in a folio that is not uptodate, zero what a short
    copy left, and a folio the write covered from its start, whole or up to EOF, is zeroed past
    the copy and made uptodate; the folio is marked dirty (unless ``dirty`` is False)."""
    inode = mapping.host
    last_pos = pos + copied
    if last_pos > inode.i_size:
        i_size_write(task, inode, last_pos)
    if not folio.uptodate:
        start = pos - folio_pos(folio)
        if copied < len:
            folio_zero_range(folio, start + copied, len - copied)
        if pos == folio_pos(folio) and (len == PAGE_SIZE or pos + len == inode.i_size):
            folio_zero_segments(folio, start + copied, PAGE_SIZE, 0, 0)
            folio_mark_uptodate(task, folio)
    if dirty:
        folio_mark_dirty(folio)
    folio_unlock(task, folio)
    task.emit((tp.EXIT, task.pid, name, copied))
    return copied


def orangefs_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """orangefs_write_end(), fixed form (see the module docstring): what the copy did not
    write is taken back out of the folio's write range; a range left empty is dropped and the
    folio not dirtied for it (write_begin made that range on a clean folio: a range it extends
    keeps the bytes it had)."""
    task.emit((tp.ENTER, task.pid, "orangefs_write_end", copied))
    wr = folio_write_range(folio)
    dirty = True
    if copied < len and wr is not None:
        wr.len -= len - copied
        if wr.len <= 0:
            folio.private = None
            dirty = False
    return _orangefs_write_end(task, mapping, pos, len, copied, folio, "orangefs_write_end", dirty)


def orangefs_write_end_2025(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """orangefs_write_end() of v6.14–v6.15, before 219bf6edd7ef: the write range keeps the
    whole ``len`` write_begin recorded, whatever was copied."""
    task.emit((tp.ENTER, task.pid, "orangefs_write_end", copied))
    return _orangefs_write_end(task, mapping, pos, len, copied, folio, "orangefs_write_end")


def orangefs_read_folio(task: Task, folio: Folio) -> int:
    """orangefs_read_folio() (fs/orangefs/inode.c, v6.18): a dirty folio is laundered first;
    then the page is read from the server (a block it does not have reads as zeros)."""
    inode = folio.mapping.host
    if folio.dirty:
        orangefs_launder_folio(task, folio)
    data = inode.disk.get(folio.index)
    folio.data[0:PAGE_SIZE] = data if data is not None else bytes(PAGE_SIZE)
    folio_initialized(folio, 0, PAGE_SIZE)
    folio_mark_uptodate(task, folio)
    return 0


def orangefs_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    """orangefs_fault() (fs/orangefs/file.c): revalidates attributes (not modelled), then
    filemap_fault()."""
    return (yield from filemap_fault(task, vma, pgoff))


orangefs_address_operations = AddressSpaceOperations(
    "orangefs_address_operations", orangefs_write_begin, orangefs_write_end, orangefs_read_folio
)

orangefs_address_operations_2025 = AddressSpaceOperations(
    "orangefs_address_operations",
    orangefs_write_begin,
    orangefs_write_end_2025,
    orangefs_read_folio,
)


def orangefs() -> FileSystem:
    """orangefs with the fixed write_end: order-0 folios, the server as its backing store.
    orangefs_file_write_iter() is generic_file_write_iter() once the attributes are revalidated
    (not modelled)."""
    return FileSystem(
        "orangefs",
        MAX_LFS_FILESIZE,
        0,
        True,
        orangefs_address_operations,
        generic_file_write_iter,
        orangefs_fault,
    )


def orangefs_2025() -> FileSystem:
    """orangefs as in v6.14–v6.15, whose write range went wrong on a short copy."""
    return FileSystem(
        "orangefs-2025",
        MAX_LFS_FILESIZE,
        0,
        True,
        orangefs_address_operations_2025,
        generic_file_write_iter,
        orangefs_fault,
    )
