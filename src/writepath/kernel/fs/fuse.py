"""FUSE write-through buffered writes — fs/fuse/file.c (fuse_perform_write(),
fuse_fill_write_pages(), fuse_send_write_pages(); v6.13–v6.18).

A FUSE mount without ``writeback_cache`` (libfuse's default) writes through: the loop copies up to
``max_write`` bytes of the source into page-cache folios and sends them to the daemon as one
FUSE_WRITE request; the daemon's reply says how much it wrote, and i_size follows that. The two
forms of ``fuse_fill_write_pages()``:

- before faa794dd2e17 (v6.13–v6.15): before each folio, fault the source chunk in and stop with
  EFAULT if *any* byte of it cannot be (``if (fault_in_iov_iter_readable(ii, bytes))``);
- from v6.16 (faa794dd2e17, "fuse: Move prefaulting out of hot write path", Dave Hansen): copy
  first; only a copy that moved nothing unlocks the folio, faults the chunk in (same any-byte
  test) and tries again.

A short copy into a folio that is not uptodate is still sent (FUSE writes the bytes, not the
folio): the folio is left not uptodate and the request ends there. The request holds what was
copied; the loop stops when a request comes back short or nothing could be copied.

The daemon is the model's backing store: what a FUSE_WRITE carries lands in ``Inode.disk``, and
each request is traced as an ENTER/EXIT pair named ``FUSE_WRITE`` (offset, then size), the log the
project's passthrough daemon keeps on the real kernel. The connection is libfuse 3's default:
``max_write`` 1 MiB, ``max_pages`` 256, big_writes. Not modelled: the attribute cache and
FUSE_I_SIZE_UNSTABLE, O_DIRECT/direct_io, writeback_cache, large folios; blocks are 4 KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.buffer import read_block
from writepath.kernel.constants import MAX_LFS_FILESIZE, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.filemap import EFAULT, filemap_fault, generic_write_checks, loop_copies_first
from writepath.kernel.iov_iter import (
    IovIter,
    copy_folio_from_iter_atomic,
    fault_in_iov_iter_readable,
)
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpace,
    AddressSpaceOperations,
    Folio,
    __filemap_get_folio,
    folio_mark_uptodate,
    folio_size,
    folio_unlock,
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
    FileSystem,
    Inode,
    Kiocb,
    file_update_time,
    i_size_write,
    inode_lock,
    inode_unlock,
)

#: fc->max_write and fc->max_pages as libfuse 3 negotiates them (1 MiB in 256 pages).
FUSE_MAX_WRITE: Final = 1 << 20
FUSE_MAX_PAGES: Final = 256


@dataclass
class FuseIoArgs:
    """struct fuse_io_args for a write: the folios of one request and the bytes in each, and
    whether the last folio is still locked (it was not uptodate)."""

    folios: list[Folio] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    folio_locked: bool = False


def fuse_wr_pages(pos: int, len: int, max_pages: int) -> int:
    return min(((pos + len - 1) >> PAGE_SHIFT) - (pos >> PAGE_SHIFT) + 1, max_pages)


def fuse_fill_write_pages(
    task: Task, ia: FuseIoArgs, mapping: AddressSpace, ii: IovIter, pos: int, max_folios: int
) -> Sleeps[int]:
    """Copy the source into folios for one request; the bytes copied, or -EFAULT if none."""
    copy_first = loop_copies_first(task, "fuse_perform_write")
    offset = pos & (PAGE_SIZE - 1)
    count = 0
    err = 0
    num = min(ii.count, FUSE_MAX_WRITE)
    while num and len(ia.folios) < max_folios:
        index = pos >> PAGE_SHIFT
        nbytes = min(PAGE_SIZE - offset, num)
        tmp = 0
        folio: Folio | None = None
        while True:  # the "again:" label
            if not copy_first and (yield from fault_in_iov_iter_readable(task, ii, nbytes)):
                break
            folio = yield from __filemap_get_folio(task, mapping, index, FGP_WRITEBEGIN)
            assert folio is not None
            folio_offset = ((index - folio.index) << PAGE_SHIFT) + offset
            nbytes = min(folio_size(folio) - folio_offset, nbytes)
            tmp = copy_folio_from_iter_atomic(task, folio, folio_offset, nbytes, ii)
            if tmp:
                break
            folio_unlock(task, folio)
            note_no_progress(task, (pos, ii.count, nbytes))
            # From v6.16 the fault-in happens here, with the folio unlocked.
            if copy_first and (yield from fault_in_iov_iter_readable(task, ii, nbytes)):
                break
        if not tmp or folio is None:
            err = -EFAULT
            break
        err = 0
        ia.folios.append(folio)
        ia.lengths.append(tmp)
        ia.offsets.append(folio_offset)
        count += tmp
        pos += tmp
        num -= tmp
        offset += tmp
        if offset == PAGE_SIZE:
            offset = 0
        fuse_mark_copied_folio(task, folio, tmp)
        if folio.uptodate:
            folio_unlock(task, folio)
        else:
            ia.folio_locked = True
            break
        if offset != 0:
            break
    return count if count > 0 else err


def fuse_mark_copied_folio(task: Task, folio: Folio, copied: int) -> None:
    """The uptodate rule of fuse_fill_write_pages() (fs/fuse/file.c, v6.18): a folio the copy
    filled whole is marked uptodate; any other is left as it was. The folio is never read
    first, so a new folio that took a partial copy stays not uptodate, the rest of its memory
    what the page allocator gave; fuse_send_write_pages() does not change that (it only clears
    uptodate, on an error or a short reply)."""
    if copied == folio_size(folio):
        folio_mark_uptodate(task, folio)


def fuse_new_folio_written(task: Task, folio: Folio, copied: int) -> None:
    """A new page-cache folio (from __filemap_get_folio(FGP_WRITEBEGIN), not cleared) into whose
    start fuse_fill_write_pages() (fs/fuse/file.c, v6.18) copied ``copied`` bytes, whole-folio
    requests before it: what a write-through write of a file from offset 0 leaves in the page
    cache. The bytes past the copy stay uninitialized, and a partial folio (a file's partial
    EOF page) stays not uptodate: the next fault on it reads it (filemap_fault()'s
    page_not_uptodate path, then a retry), as a read() does."""
    folio.uninit[:] = [(copied, folio_size(folio))] if copied < folio_size(folio) else []
    folio.data[copied:] = bytes(folio_size(folio) - copied)  # uninitialized reads as zeros
    fuse_mark_copied_folio(task, folio, copied)


def fuse_send_write_pages(task: Task, ia: FuseIoArgs, inode: Inode, pos: int, count: int) -> int:
    """Send one FUSE_WRITE of ``count`` bytes at ``pos``; the daemon writes them all (the
    passthrough daemon writes what it is given). Returns the size the daemon reports. The
    folios were locked for the request; the last one is unlocked here if it still is."""
    task.emit((tp.ENTER, task.pid, "FUSE_WRITE", pos))
    written = 0
    for folio, length, off in zip(ia.folios, ia.lengths, ia.offsets, strict=True):
        file_pos = (folio.index << PAGE_SHIFT) + off
        data = bytes(folio.data[off : off + length])
        fuse_daemon_write(inode, file_pos, data)
        written += length
    if ia.folio_locked and ia.folios:
        folio_unlock(task, ia.folios[-1])
    task.emit((tp.EXIT, task.pid, "FUSE_WRITE", written))
    return written


def fuse_daemon_write(inode: Inode, pos: int, data: bytes) -> None:
    """What the passthrough daemon does with a FUSE_WRITE: pwrite() into its backing file,
    which the model keeps as the inode's disk blocks."""
    while data:
        index = pos >> PAGE_SHIFT
        off = pos & (PAGE_SIZE - 1)
        n = min(PAGE_SIZE - off, len(data))
        block = bytearray(inode.disk.get(index, bytes(PAGE_SIZE)))
        block[off : off + n] = data[:n]
        inode.disk[index] = bytes(block)
        data = data[n:]
        pos += n


def fuse_perform_write(task: Task, iocb: Kiocb, ii: IovIter) -> Sleeps[int]:
    """fuse_perform_write(): requests until the source is used up, a request comes back short
    or one copies nothing; then, if anything was written, i_size = pos if larger
    (fuse_write_update_attr())."""
    inode = iocb.ki_filp.f_inode
    task.emit((tp.ENTER, task.pid, "fuse_perform_write", ii.count))
    note_loop_start(task)
    pos = iocb.ki_pos
    res = 0
    err = 0
    while True:
        ia = FuseIoArgs()
        nr_pages = fuse_wr_pages(pos, ii.count, FUSE_MAX_PAGES)
        count = yield from fuse_fill_write_pages(task, ia, inode.i_mapping, ii, pos, nr_pages)
        if count <= 0:
            err = count
        else:
            num_written = fuse_send_write_pages(task, ia, inode, pos, count)
            note_progress(task)
            res += num_written
            pos += num_written
            if num_written != count:
                err = -5  # -EIO: a short write ends the loop
        yield COND_RESCHED
        if err or not ii.count:
            break
    # fuse_write_update_attr(): i_size moves only when something was written.
    if res > 0 and pos > inode.i_size:
        i_size_write(task, inode, pos)
    if res:
        iocb.ki_pos += res
    ret = res if res > 0 else err
    task.emit((tp.EXIT, task.pid, "fuse_perform_write", ret))
    return ret


def fuse_cache_write_iter(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """fuse_cache_write_iter() without writeback_cache: inode lock, generic_write_checks()
    (for O_APPEND after refreshing i_size, which the model always has), file_remove_privs()
    (nothing to do in the model), file_update_time(), fuse_perform_write(). Write-through:
    the folios are never dirtied, so neither folio_mark_dirty() nor dirty throttling."""
    inode = iocb.ki_filp.f_inode
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        ret = file_update_time(task, iocb.ki_filp)
        if not ret:
            ret = yield from fuse_perform_write(task, iocb, from_)
    inode_unlock(task, inode)
    return ret


def fuse_read_folio(task: Task, folio: Folio) -> int:
    """fuse_read_folio(): a FUSE_READ of the folio; what the daemon's file lacks reads as
    zeros (a short read past EOF is zero-filled)."""
    inode = folio.mapping.host
    for k in range(folio.nr_pages):
        read_block(inode, folio, k)
    folio_mark_uptodate(task, folio)
    return 0


# fuse_file_aops (fs/fuse/file.c) has fuse_write_begin()/fuse_write_end(), but only the
# writeback_cache mode writes through them, and the model mounts without it: left out.
fuse_file_aops = AddressSpaceOperations("fuse_file_aops", None, None, fuse_read_folio)


def fuse() -> FileSystem:
    """A FUSE mount of the project's passthrough daemon: write-through, order-0 folios."""
    return FileSystem(
        "fuse",
        MAX_LFS_FILESIZE,
        0,
        True,
        fuse_file_aops,
        fuse_cache_write_iter,
        filemap_fault,  # fuse_file_vm_ops' .fault
    )
