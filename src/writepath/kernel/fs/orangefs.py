"""orangefs — fs/orangefs/inode.c and fs/orangefs/file.c (v6.18), and its bug of 2025.

orangefs does no read-modify-write: write_begin neither reads nor zeroes the folio. Instead each
folio remembers in ``folio->private`` the one byte range of it that writes put there and the
server does not have yet (``struct orangefs_write_range``: pos, len, and the writer's uid and
gid, not modelled: every task here is one user). A write contiguous with the range extends it;
any other write first launders the folio (writes a range to the server, synchronously) and
starts a new range. Writeback (``orangefs_writepage_locked()``) sends the range to the server.

The bug (facts.md §3): write_begin records the whole ``len`` it was asked for, and write_end
accepts a short copy as it is and never takes back from the range what was not copied. A zero
copy at EOF leaves a range that starts at i_size; the retry's write_begin finds a range it
cannot extend and launders it, and writeback, finding a range that does not start inside the
file, warns and computes an empty (or, past EOF, wrapped) length to send. xfstests generic/010
hit the warning once v6.14 made zero copies common; the fix's message says orangefs deadlocked
writing page cache data out, a hang in the exchange with the userspace server that the model
does not have (the model's server takes any length, zero too); the model shows the warnings.

Fixed by 219bf6edd7ef ("orangefs: adjust counting code to recover from 665575cf", Mike
Marshall), merged for v6.15 (between -rc6 and -rc7) and backported to 6.14.y. It leaves
write_end alone. It changes two functions: writeback no longer warns about where the range lies,
clips the range to i_size only when it starts inside the file or at its end, and sends the whole
range when that clip is empty; and write_begin, when it cannot extend the range, first makes the
range the new write's [pos, pos + len) and then launders: what laundering sends is the new
write's bytes as the folio holds them before the copy, not the old range.

Forms: ``orangefs`` is v6.18 (the fixed code); ``orangefs-2025`` is the code before the fix as
v6.14 shipped it (v6.15-rc1 to -rc6 had the same logic on folios). Both share write_end, and its
"fully written page" branch: a zero copy of a whole page into a folio that is not uptodate zeroes
it and marks it uptodate, so over a file page that is on the server but not cached an EFAULT
write leaves a page of zeros in the cache (the explorer reports efault-after-copy for it under
v6.14, where such zero copies happen alone).

The server is ``Inode.disk`` (one page per block); its own file size is not modelled (the fixed
writeback may send bytes past i_size: they land in the server's blocks). A read sees a folio
that is not uptodate only after orangefs_read_folio() has laundered its range to the server;
the end state of a run (``writepath.run.file_state``) reads uptodate folios over the disk and
does not overlay such a pending range, so a run's file content is right only where each written
page ends uptodate (written whole, or from its start to EOF, as the race scenarios do). Not
modelled either: the orangefs inode attribute cache and its revalidation, the bufmap, large
folios (orangefs has none), and writepages (nothing here runs writeback but laundering).
"""

from __future__ import annotations

from collections.abc import Callable

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
    """orangefs_writepage_locked() (fs/orangefs/inode.c, v6.18; its range logic as 219bf6edd7ef
    made it): send the folio's write range to the server, then drop the range. The range is
    clipped to i_size if it starts inside the file or at its end and runs past it; a clip left
    empty (a range starting at i_size) sends the whole range instead. A folio without a range
    warns and sends the folio, clipped to i_size when it starts inside the file. A length of
    zero warns."""
    inode = folio.mapping.host
    size = inode.i_size
    where = "orangefs_writepage_locked"
    wr = folio_write_range(folio)
    if wr is not None:
        off = wr.pos
        wlen = size - off if off + wr.len > size and off <= size else wr.len
        if wlen == 0:
            wlen = wr.len
    else:
        WARN_ON(task, True, where, f"{inode.name}: folio {folio.index} has no write range")
        off = folio_pos(folio)
        wlen = folio_size(folio)
        # The kernel compares with the unsigned len - off: past EOF it wraps and never clips.
        if off <= size and wlen > size - off:
            wlen = size - off
    WARN_ON(task, wlen == 0, where, f"{inode.name}: nothing to send from folio {folio.index}")
    if wlen > 0:
        _send_to_server(inode, folio, off, wlen)
    folio.private = None
    return 0


def orangefs_writepage_locked_2025(task: Task, folio: Folio) -> int:
    """orangefs_writepage_locked() before 219bf6edd7ef (fs/orangefs/inode.c, v6.14): the range
    clipped to i_size whenever it runs past it, with three warnings: the range does not start
    inside the file; what is sent is not inside it (starts at i_size or ends past it); nothing
    is sent. A folio without a range warns and sends the page up to i_size.

    Where the range starts beyond i_size, the kernel's unsigned length ``len - off`` wraps to
    an enormous one; what the I/O path does with that is not modelled: the model warns as the
    kernel does and sends nothing."""
    inode = folio.mapping.host
    size = inode.i_size
    where = "orangefs_writepage_locked"
    wr = folio_write_range(folio)
    if wr is not None:
        WARN_ON(
            task,
            wr.pos >= size,
            where,
            f"{inode.name}: write range [{wr.pos}, {wr.pos + wr.len}) of folio {folio.index} "
            f"starts at or past i_size {size}",
        )
        off = wr.pos
        wlen = size - off if off + wr.len > size else wr.len
    else:
        WARN_ON(task, True, where, f"{inode.name}: folio {folio.index} has no write range")
        off = folio_pos(folio)
        wlen = size - off if off + PAGE_SIZE > size else PAGE_SIZE
    wrapped = wlen < 0
    WARN_ON(
        task,
        off == size or wrapped or off + wlen > size,
        where,
        f"{inode.name}: sending [{off}, {off + wlen if not wrapped else '...'}) of folio "
        f"{folio.index}, not inside i_size {size}",
    )
    WARN_ON(task, wlen == 0, where, f"{inode.name}: nothing to send from folio {folio.index}")
    if wlen > 0:
        _send_to_server(inode, folio, off, wlen)
    folio.private = None
    return 0


def _launder(task: Task, folio: Folio, writepage: Callable[[Task, Folio], int]) -> int:
    if folio.dirty:
        folio.dirty = False
        return writepage(task, folio)
    return 0


def orangefs_launder_folio(task: Task, folio: Folio) -> int:
    """orangefs_launder_folio() (fs/orangefs/inode.c, v6.18): a dirty folio is cleaned
    (folio_clear_dirty_for_io()) and written at once by orangefs_writepage_locked()."""
    return _launder(task, folio, orangefs_writepage_locked)


def orangefs_launder_folio_2025(task: Task, folio: Folio) -> int:
    """orangefs_launder_folio() of v6.14: the same, over the writeback before 219bf6edd7ef."""
    return _launder(task, folio, orangefs_writepage_locked_2025)


def _write_begin(
    task: Task, mapping: AddressSpace, pos: int, len: int, fixed: bool
) -> Sleeps[tuple[int, Folio | None, object]]:
    task.emit((tp.ENTER, task.pid, "orangefs_write_begin", pos))
    launder = orangefs_launder_folio if fixed else orangefs_launder_folio_2025
    folio = yield from __filemap_get_folio(task, mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN)
    assert folio is not None
    ret = 0
    if folio.dirty and folio_write_range(folio) is None:
        ret = launder(task, folio)
    wr = folio_write_range(folio)
    if not ret and wr is not None:
        if wr.pos + wr.len == pos:
            wr.len += len
            task.emit((tp.EXIT, task.pid, "orangefs_write_begin", 0))
            return 0, folio, None
        if fixed:
            # 219bf6edd7ef: the range laundered is the new write's, not the one left there.
            wr.pos = pos
            wr.len = len
        ret = launder(task, folio)
    if ret:
        folio_unlock(task, folio)
        task.emit((tp.EXIT, task.pid, "orangefs_write_begin", ret))
        return ret, None, None
    folio.private = OrangefsWriteRange(folio, pos, len)
    task.emit((tp.EXIT, task.pid, "orangefs_write_begin", 0))
    return 0, folio, None


def orangefs_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """orangefs_write_begin() (fs/orangefs/inode.c, v6.18): a locked order-0 folio, neither
    read nor zeroed. A dirty folio without a range is laundered (should never happen); a range
    that ends at ``pos`` grows by ``len``; any other range is first replaced by [pos, pos + len)
    (219bf6edd7ef) and the folio laundered, then the folio gets a new range [pos, pos + len)."""
    return (yield from _write_begin(task, mapping, pos, len, True))


def orangefs_write_begin_2025(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """orangefs_write_begin() of v6.14, before 219bf6edd7ef: a range it cannot extend is
    laundered as it is (the old range is what writeback sends)."""
    return (yield from _write_begin(task, mapping, pos, len, False))


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
    """orangefs_write_end() (fs/orangefs/inode.c, v6.18; 219bf6edd7ef left it as v6.14 had
    it): accept the copy whatever it is (the write range keeps the whole ``len``); i_size =
    pos + copied if larger; in a folio that is not uptodate, zero what a short copy left, and
    a folio the write covered from its start, whole or up to EOF, is zeroed past the copy and
    made uptodate; the folio is marked dirty."""
    task.emit((tp.ENTER, task.pid, "orangefs_write_end", copied))
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
    folio_mark_dirty(task, folio)
    folio_unlock(task, folio)
    task.emit((tp.EXIT, task.pid, "orangefs_write_end", copied))
    return copied


def _read_folio(task: Task, folio: Folio, launder: Callable[[Task, Folio], int]) -> int:
    inode = folio.mapping.host
    if folio.dirty:
        launder(task, folio)
    data = inode.disk.get(folio.index)
    folio.data[0:PAGE_SIZE] = data if data is not None else bytes(PAGE_SIZE)
    folio_initialized(folio, 0, PAGE_SIZE)
    folio_mark_uptodate(task, folio)
    return 0


def orangefs_read_folio(task: Task, folio: Folio) -> int:
    """orangefs_read_folio() (fs/orangefs/inode.c, v6.18): a dirty folio is laundered first;
    then the page is read from the server (a block it does not have reads as zeros)."""
    return _read_folio(task, folio, orangefs_launder_folio)


def orangefs_read_folio_2025(task: Task, folio: Folio) -> int:
    """orangefs_read_folio() of v6.14: the same, laundering with the writeback before the fix."""
    return _read_folio(task, folio, orangefs_launder_folio_2025)


def orangefs_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    """orangefs_fault() (fs/orangefs/file.c): revalidates attributes (not modelled), then
    filemap_fault()."""
    return (yield from filemap_fault(task, vma, pgoff))


orangefs_address_operations = AddressSpaceOperations(
    "orangefs_address_operations", orangefs_write_begin, orangefs_write_end, orangefs_read_folio
)

orangefs_address_operations_2025 = AddressSpaceOperations(
    "orangefs_address_operations",
    orangefs_write_begin_2025,
    orangefs_write_end,
    orangefs_read_folio_2025,
)


def orangefs() -> FileSystem:
    """orangefs as v6.18 has it (219bf6edd7ef's fix included): order-0 folios, the server as
    its backing store.
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
    """orangefs before 219bf6edd7ef (v6.14), whose write range went wrong on a short copy."""
    return FileSystem(
        "orangefs-2025",
        MAX_LFS_FILESIZE,
        0,
        True,
        orangefs_address_operations_2025,
        generic_file_write_iter,
        orangefs_fault,
    )
