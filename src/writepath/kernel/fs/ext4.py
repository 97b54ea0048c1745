"""ext4 in its default mode (data=ordered, delayed allocation) — fs/ext4/inode.c, fs/ext4/file.c.

Follows v6.16–v6.18, where regular ext4 files use large folios (up to MAX_PAGECACHE_ORDER):
``ext4_buffered_write_iter``, ``ext4_da_write_begin`` with ``ext4_block_write_begin``,
``ext4_da_write_end``/``ext4_da_do_write_end`` and ``ext4_read_folio`` (via
``block_read_full_folio``), over buffer heads (``writepath.kernel.buffer``). The two
behaviours that matter to the write loop:

- write_begin *reads* a block the write covers only in part, if the block holds data on disk
  and the folio is not uptodate; a block that is a hole is zeroed around the write instead;
- write_end refuses a short copy into a folio that is not uptodate (returns 0), so the loop
  retries with ``bytes = copied``.

The disk is ``Inode.disk`` (allocated blocks with their data); blocks written in this run stay
in the page cache as delayed allocations (``Ext4.delayed``). Journalling, inline data, fscrypt,
verity and the non-delalloc fallback are not modelled; blocks are 4 KiB.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.buffer import (
    BufferHeads,
    GetBlock,
    __block_write_begin_int,
    block_read_full_folio,
    block_write_end,
    folio_buffers,
    folio_zero_new_buffers,
    zero_partial_block,
)
from writepath.kernel.bug import WARN_ON
from writepath.kernel.constants import MAX_PAGECACHE_ORDER, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.filemap import filemap_fault, generic_write_checks
from writepath.kernel.iov_iter import IovIter
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
    folio_pos,
    folio_size,
    folio_unlock,
    folio_zero_range,
)
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import (
    File,
    FileSystem,
    Inode,
    Kiocb,
    file_modified,
    i_size_write,
    inode_lock,
    inode_unlock,
)

#: ext4_walk_page_buffers()' callback: (task, folio, its buffers, block k of the folio).
WalkFn = Callable[[Task, Folio, BufferHeads, int], None]

#: s_maxbytes of an extent-mapped file with 4 KiB blocks: (2**32 - 1) blocks.
EXT4_MAX_SIZE_4K: Final = ((1 << 32) - 1) << 12


def ext4_da_get_block_prep(inode: Inode, index: int, bhs: BufferHeads, k: int) -> int:
    """ext4_da_get_block_prep() → ext4_da_map_blocks() (fs/ext4/inode.c, v6.18): a block with
    data on disk is mapped; a hole, or a block already delayed, is mapped to a delayed
    allocation and marked new and delay (a hole gets its reservation here)."""
    bhs.mapped[k] = True
    if index in inode.disk:
        return 0
    inode.delalloc.add(index)
    bhs.new[k] = True
    bhs.delay[k] = True
    return 0


def ext4_block_write_begin(
    task: Task, folio: Folio, pos: int, len: int, get_block: GetBlock
) -> int:
    """ext4_block_write_begin() (fs/ext4/inode.c, v6.18): ext4's own copy of
    ``__block_write_begin_int()``. It differs in one way the model keeps: a new block of an
    uptodate folio is left new and clean for write_end to dirty (``defer_new_dirty``). fscrypt
    and the journal write access it takes for data=journal (no byte changes) are not modelled."""
    return __block_write_begin_int(task, folio, pos, len, get_block, defer_new_dirty=True)


def ext4_da_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """ext4_da_write_begin(): a folio sized for the write, its blocks prepared."""
    task.emit((tp.ENTER, task.pid, "ext4_da_write_begin", pos))
    tp.trace_ext4_write_begin(task, "ext4_da_write_begin", mapping.host.name, pos, len)
    index = pos >> PAGE_SHIFT
    folio = yield from __filemap_get_folio(task, mapping, index, FGP_WRITEBEGIN, fgf_set_order(len))
    assert folio is not None
    end_of_folio = folio_pos(folio) + folio_size(folio)
    if pos + len > end_of_folio:
        len = end_of_folio - pos
    ext4_block_write_begin(task, folio, pos, len, ext4_da_get_block_prep)
    task.emit((tp.EXIT, task.pid, "ext4_da_write_begin", 0))
    return 0, folio, None


def ext4_da_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """ext4_da_write_end() → ext4_da_do_write_end(): a short copy into a folio that is not
    uptodate becomes a zero copy; i_size = pos + copied if that is larger (also for a zero
    copy beyond EOF); then the tail of the old last block is zeroed up to ``pos``."""
    task.emit((tp.ENTER, task.pid, "ext4_da_write_end", copied))
    tp.trace_ext4_write_end(task, "ext4_da_write_end", mapping.host.name, pos, len, copied)
    inode = mapping.host
    if copied < len and not folio.uptodate:
        copied = 0
    old_size = inode.i_size
    copied = block_write_end(task, pos, len, copied, folio)
    new_i_size = pos + copied
    if new_i_size > inode.i_size:
        i_size_write(task, inode, new_i_size)
    folio_mark_dirty(task, folio)
    folio_unlock(task, folio)
    if pos > old_size:
        zero_partial_block(inode, old_size, pos)
    task.emit((tp.EXIT, task.pid, "ext4_da_write_end", copied))
    return copied


def ext4_read_folio(task: Task, folio: Folio) -> int:
    """ext4_read_folio() → block_read_full_folio()."""
    return block_read_full_folio(task, folio)


def ext4_buffered_write_iter(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """ext4_file_write_iter() -> ext4_buffered_write_iter(): inode lock, ext4_write_checks()
    (for extent-mapped files: generic_write_checks(), then file_modified() when there is
    something to write), the generic loop."""
    inode = iocb.ki_filp.f_inode
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        err = file_modified(task, iocb.ki_filp)
        if err:
            ret = err
    if ret > 0:
        ret = yield from task.kernel.perform_write(task, iocb, from_)
    inode_unlock(task, inode)
    return ret


ext4_da_aops = AddressSpaceOperations(
    "ext4_da_aops", ext4_da_write_begin, ext4_da_write_end, ext4_read_folio
)


def ext4() -> FileSystem:
    """ext4 with 4 KiB blocks, extents, delalloc and large folios (v6.16+)."""
    return FileSystem(
        "ext4",
        EXT4_MAX_SIZE_4K,
        MAX_PAGECACHE_ORDER,
        True,
        ext4_da_aops,
        ext4_buffered_write_iter,
        filemap_fault,  # ext4_file_vm_ops' .fault (v6.18)
    )


# --- ext4 without delayed allocation (-o nodelalloc) and with data=journal ------------------
#
# Both follow fs/ext4/inode.c of v6.18. Without delalloc, write_begin allocates the blocks it
# maps at once (ext4_get_block(), or ext4_get_block_unwritten() under the default
# dioread_nolock: either way a freshly allocated block comes back mapped and new); write_end is
# ext4_write_end() over block_write_end(). data=journal has the same write_begin (it also takes
# journal write access to each buffer, which changes no byte) and ext4_journalled_write_end(),
# and no large folios (ext4_should_enable_large_folio() refuses journalled data). The journal
# itself, orphan handling and the transaction handle are not modelled: they decide crash
# consistency, not what a write returns or what the file then holds.


def ext4_get_block(inode: Inode, index: int, bhs: BufferHeads, k: int) -> int:
    """ext4_get_block() with create set (fs/ext4/inode.c, v6.18): a block with data on disk is
    mapped; a hole gets a block allocated now, and its buffer is mapped and new. The model's
    disk keeps only blocks that hold data, so the new block is tracked like a delayed one:
    written, its data only in the page cache until writeback."""
    bhs.mapped[k] = True
    if index in inode.disk or index in inode.delalloc:
        return 0
    inode.delalloc.add(index)
    bhs.new[k] = True
    return 0


def ext4_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """ext4_write_begin() (fs/ext4/inode.c, v6.18): a folio sized for the write (order 0 where
    the mapping has no large folios), its blocks mapped and allocated by ext4_get_block().

    Not modelled: the error path. When an allocation fails (-ENOSPC, or -EAGAIN when the
    journal handle cannot be extended), the kernel unlocks the folio, ext4_truncate_failed_write()
    drops it from the page cache with the blocks allocated beyond EOF, and -EAGAIN, or -ENOSPC
    with ext4_should_retry_alloc() (blocks freed in the running transaction: it forces a commit),
    goes back to ``retry_journal``, where the folio no longer belongs to the mapping and a new
    one is grabbed: a delete and a second add of the folio in the trace. The model's
    filesystems never run out of space or journal credits."""
    task.emit((tp.ENTER, task.pid, "ext4_write_begin", pos))
    tp.trace_ext4_write_begin(task, "ext4_write_begin", mapping.host.name, pos, len)
    index = pos >> PAGE_SHIFT
    folio = yield from __filemap_get_folio(task, mapping, index, FGP_WRITEBEGIN, fgf_set_order(len))
    assert folio is not None
    end_of_folio = folio_pos(folio) + folio_size(folio)
    if pos + len > end_of_folio:
        len = end_of_folio - pos
    ext4_block_write_begin(task, folio, pos, len, ext4_get_block)
    task.emit((tp.EXIT, task.pid, "ext4_write_begin", 0))
    return 0, folio, None


def ext4_truncate_failed_write(task: Task, inode: Inode) -> None:
    """ext4_truncate_failed_write() → truncate_inode_pages(i_size): the blocks a failed write
    allocated beyond EOF are freed and the folios wholly beyond EOF dropped (the tail of a
    folio straddling EOF is beyond i_size and never read back, so it is left as it is)."""
    first = (inode.i_size + PAGE_SIZE - 1) >> PAGE_SHIFT
    for index in [i for i in inode.delalloc if i >= first]:
        inode.delalloc.discard(index)
    for index, folio in list(inode.i_mapping.i_pages.items()):
        if index == folio.index and folio.index >= first and folio.owner is None:
            filemap_remove_folio(task, folio)


def ext4_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """ext4_write_end() (fs/ext4/inode.c, v6.18): block_write_end() (a short copy into a folio
    that is not uptodate becomes a zero copy), i_size = pos + copied if larger (a zero copy
    beyond EOF too), folio unlocked, the old EOF block's tail zeroed up to ``pos``; if the write
    asked for more than i_size now covers, the blocks allocated beyond EOF are truncated."""
    task.emit((tp.ENTER, task.pid, "ext4_write_end", copied))
    tp.trace_ext4_write_end(task, "ext4_write_end", mapping.host.name, pos, len, copied)
    inode = mapping.host
    old_size = inode.i_size
    copied = block_write_end(task, pos, len, copied, folio)
    if pos + copied > inode.i_size:  # ext4_update_inode_size()
        i_size_write(task, inode, pos + copied)
    folio_mark_dirty(task, folio)
    folio_unlock(task, folio)
    if old_size < pos:
        zero_partial_block(inode, old_size, pos)
    if pos + len > inode.i_size:
        ext4_truncate_failed_write(task, inode)
    task.emit((tp.EXIT, task.pid, "ext4_write_end", copied))
    return copied


def jbd2_journal_dirty_metadata(task: Task, folio: Folio, bhs: BufferHeads, k: int) -> None:
    """jbd2_journal_dirty_metadata() (fs/jbd2/transaction.c, v6.18), the part that matters
    here: the buffer joins the transaction with BH_JBDDirty. A buffer that also has BH_Dirty is
    a bug jbd2 reports (warn_dirty_buffer(), "Spotted dirty metadata buffer") before it clears
    the bit, when __jbd2_journal_file_buffer() files the buffer. Transactions, commits and
    checkpoints are not modelled."""
    if WARN_ON(
        task,
        bhs.dirty[k],
        "warn_dirty_buffer",
        f"{folio.mapping.host.name}: block {folio.index + k} has BH_Dirty as it is journalled",
    ):
        bhs.dirty[k] = False
    bhs.jbddirty[k] = True


def write_end_fn(task: Task, folio: Folio, bhs: BufferHeads, k: int) -> None:
    """write_end_fn() (fs/ext4/inode.c, v6.18), the data=journal commit of one buffer: uptodate,
    handed to the journal by ext4_dirty_journalled_data() (the folio is marked dirty and the
    buffer goes through jbd2_journal_dirty_metadata(): BH_JBDDirty, never BH_Dirty), no longer
    new."""
    if not bhs.mapped[k]:
        return
    bhs.uptodate[k] = True
    folio_mark_dirty(task, folio)
    jbd2_journal_dirty_metadata(task, folio, bhs, k)
    bhs.new[k] = False


def ext4_walk_page_buffers(task: Task, folio: Folio, start: int, end: int, fn: WalkFn) -> bool:
    """ext4_walk_page_buffers() (fs/ext4/inode.c, v6.18): ``fn`` on each buffer overlapping
    [start, end); returns ``partial``: whether a buffer outside the range is not uptodate."""
    bhs = folio_buffers(folio)
    assert bhs is not None
    partial = False
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if block_end <= start or block_start >= end:
            if not bhs.uptodate[k]:
                partial = True
            continue
        fn(task, folio, bhs, k)
    return partial


def ext4_journalled_zero_new_buffers(task: Task, folio: Folio, start: int, end: int) -> None:
    """ext4_journalled_zero_new_buffers() (fs/ext4/inode.c, v6.18; the fix of b90197b65518):
    each new buffer overlapping [start, end) of a folio that is not uptodate has its part of the
    range zeroed and is committed through the journal (write_end_fn()), not marked dirty as
    folio_zero_new_buffers() would; then it is no longer new."""
    bhs = folio_buffers(folio)
    assert bhs is not None
    for k in range(folio.nr_pages):
        block_start = k * PAGE_SIZE
        block_end = block_start + PAGE_SIZE
        if bhs.new[k] and block_end > start and block_start < end:
            if not folio.uptodate:
                lo, hi = max(start, block_start), min(end, block_end)
                folio_zero_range(folio, lo, hi - lo)
                write_end_fn(task, folio, bhs, k)
            bhs.new[k] = False


def _journalled_write_end_tail(
    task: Task, inode: Inode, folio: Folio, pos: int, len: int, copied: int, old_size: int
) -> None:
    """What both forms of ext4_journalled_write_end() do after the buffers: i_size
    (ext4_update_inode_size()), the folio unlocked, the old EOF block's tail zeroed up to
    ``pos``, and the blocks a short write allocated beyond EOF truncated."""
    if pos + copied > inode.i_size:
        i_size_write(task, inode, pos + copied)
    folio_unlock(task, folio)
    if old_size < pos:
        zero_partial_block(inode, old_size, pos)
    if pos + len > inode.i_size:
        ext4_truncate_failed_write(task, inode)


def ext4_journalled_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """ext4_journalled_write_end() (fs/ext4/inode.c, v6.18): a short copy into a folio that is
    not uptodate becomes a zero copy and the new buffers of [from, to) are zeroed and journalled
    (ext4_journalled_zero_new_buffers()); otherwise the new buffers past a short copy are, and
    the copied buffers go to the journal (write_end_fn()); the folio is uptodate if no buffer
    outside the copy is left behind. Then i_size, the EOF tail and the failed-write truncation
    as in ext4_write_end(). No buffer ever gets BH_Dirty."""
    task.emit((tp.ENTER, task.pid, "ext4_journalled_write_end", copied))
    tp.trace_ext4_write_end(task, "ext4_journalled_write_end", mapping.host.name, pos, len, copied)
    inode = mapping.host
    old_size = inode.i_size
    start = pos - folio_pos(folio)
    end = start + len
    if copied < len and not folio.uptodate:
        copied = 0
        ext4_journalled_zero_new_buffers(task, folio, start, end)
    else:
        if copied < len:
            ext4_journalled_zero_new_buffers(task, folio, start + copied, end)
        partial = ext4_walk_page_buffers(task, folio, start, start + copied, write_end_fn)
        if not partial:
            folio_mark_uptodate(task, folio)
    _journalled_write_end_tail(task, inode, folio, pos, len, copied, old_size)
    task.emit((tp.EXIT, task.pid, "ext4_journalled_write_end", copied))
    return copied


def ext4_journalled_write_end_2015(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """ext4_journalled_write_end() as it was in 2015 (fs/ext4/inode.c, v4.1), before
    b90197b65518: on a short copy (a zero copy if the folio is not uptodate) the new buffers
    past the copy were zeroed by page_zero_new_buffers(), the generic helper
    (``folio_zero_new_buffers()`` here), which marks them BH_Dirty; then every buffer of the
    whole range [from, to) went to the journal and the folio became uptodate if none outside
    was left behind. A journalled buffer with BH_Dirty is the bug: jbd2 warns when it files it
    (warn_dirty_buffer(), modelled in ``jbd2_journal_dirty_metadata()``), and generic/208
    failed.

    The rest is 6.18's: folio_mark_dirty() by write_end_fn() (the journal commit wrote the data
    in 2015; the model's dirty folio stands for that pending write), the EOF tail, the
    truncation of blocks allocated beyond EOF. Not a kernel of any release: the 2015 bug in
    today's write path, so that v6.13 and v6.14 can be run against it."""
    task.emit((tp.ENTER, task.pid, "ext4_journalled_write_end", copied))
    tp.trace_ext4_write_end(task, "ext4_journalled_write_end", mapping.host.name, pos, len, copied)
    inode = mapping.host
    old_size = inode.i_size
    start = pos - folio_pos(folio)
    end = start + len
    if copied < len:
        if not folio.uptodate:
            copied = 0
        folio_zero_new_buffers(task, folio, start + copied, end)
    partial = ext4_walk_page_buffers(task, folio, start, end, write_end_fn)
    if not partial:
        folio_mark_uptodate(task, folio)
    _journalled_write_end_tail(task, inode, folio, pos, len, copied, old_size)
    task.emit((tp.EXIT, task.pid, "ext4_journalled_write_end", copied))
    return copied


ext4_aops = AddressSpaceOperations("ext4_aops", ext4_write_begin, ext4_write_end, ext4_read_folio)

ext4_journalled_aops = AddressSpaceOperations(
    "ext4_journalled_aops", ext4_write_begin, ext4_journalled_write_end, ext4_read_folio
)

ext4_journalled_aops_2015 = AddressSpaceOperations(
    "ext4_journalled_aops", ext4_write_begin, ext4_journalled_write_end_2015, ext4_read_folio
)


def ext4_nodelalloc() -> FileSystem:
    """ext4 mounted -o nodelalloc: ext4_aops, large folios as with delalloc (v6.16+)."""
    return FileSystem(
        "ext4-nodelalloc",
        EXT4_MAX_SIZE_4K,
        MAX_PAGECACHE_ORDER,
        True,
        ext4_aops,
        ext4_buffered_write_iter,
        filemap_fault,  # ext4_file_vm_ops' .fault (v6.18)
    )


def ext4_journal() -> FileSystem:
    """ext4 mounted -o data=journal: ext4_journalled_aops and order-0 folios only."""
    return FileSystem(
        "ext4-journal",
        EXT4_MAX_SIZE_4K,
        0,
        True,
        ext4_journalled_aops,
        ext4_buffered_write_iter,
        filemap_fault,  # ext4_file_vm_ops' .fault (v6.18)
    )


def ext4_journal_2015() -> FileSystem:
    """ext4 -o data=journal with the write_end of 2015 (ext4_journalled_write_end_2015()): the
    bug 998ef75ddb57 exposed and 00a3d660cbac reverted it for. Exists only in the model."""
    return FileSystem(
        "ext4-journal-2015",
        EXT4_MAX_SIZE_4K,
        0,
        True,
        ext4_journalled_aops_2015,
        ext4_buffered_write_iter,
        filemap_fault,  # ext4_file_vm_ops' .fault (v6.18)
    )
