"""gfs2's buffered write of 2021 — fs/gfs2/file.c as 00bfe02f4796 ("gfs2: Fix mmap + page
fault deadlocks for buffered I/O", v5.16) left it: the retry loop around the write loop that the
gfs2 hang of 2021 (facts.md §3) spun in.

gfs2 holds its inode glock across the write, so a page fault on a source that maps a gfs2 file
could need that glock again. gfs2 therefore runs the whole write loop with page faults disabled;
when it comes back short or with -EFAULT, gfs2 faults in a window of the source itself (faults
enabled) and, if any byte of the window could be faulted in, retries; it gives up only when
nothing could be. The window is the rest of the source page the iterator stands in
(``should_fault_in_pages()``), so this loop trusts the inner loop to copy whatever is readable.
The inner loop's prefault check decides: written ``== bytes`` (fail only if nothing can be
faulted in), it copies the readable part of a partly bad chunk and the outer loop moves on;
written as "fail if any byte cannot" (the ``any-byte-check`` design), it refuses the chunk
whole with -EFAULT, the outer loop faults the readable part in again, succeeds, and retries:
forever.

Simplified, and why: gfs2 called iomap_file_buffered_write() (iomap_write_actor(), whose
prefault check was the same as generic_perform_write()'s); the model runs the design's
generic_perform_write() in its place, so that the designs that change that check change it
here. For the same reason the address space operations are a block filesystem's over buffer
heads (ext4's non-delalloc ones: allocate at write_begin, refuse a short copy into a folio that
is not uptodate, as iomap_write_end() does), not gfs2's iomap ops. The glock is one node's: it
is never demoted (``gfs2_holder_queued()`` stays true), so the loop always retries under it;
the rindex/statfs special cases and journalled data are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from writepath.kernel.constants import MAX_LFS_FILESIZE, PAGE_SIZE
from writepath.kernel.filemap import EFAULT, filemap_fault, generic_write_checks
from writepath.kernel.fs.ext4 import ext4_aops
from writepath.kernel.iov_iter import ITER_UBUF, IovIter, fault_in_iov_iter_readable
from writepath.kernel.mm import VMA
from writepath.kernel.pagecache import Folio
from writepath.kernel.task import Sleeps, Task, lock_acquire, lock_release, note_no_progress
from writepath.kernel.vfs import FileSystem, Kiocb


@dataclass
class FaultInWindow:
    """The two locals of gfs2_file_buffered_write() that should_fault_in_pages() updates: the
    count seen at the last call and the window to fault in."""

    prev_count: int = 0
    window_size: int = 0


def should_fault_in_pages(ret: int, i: IovIter, user_address: int, w: FaultInWindow) -> bool:
    """should_fault_in_pages() (fs/gfs2/file.c, v5.16, as 00bfe02f4796 added it): whether to
    fault in and retry: bytes are left, and the last pass made progress or failed with -EFAULT.

    As merged, the block that sizes a multi-page window (when the count changed since the last
    call) declares its own ``pages``, which shadows the function's ``pages = 1``; what it
    computes is thrown away. The window is therefore always the rest of the page the iterator
    stands in, ``PAGE_SIZE - offset_in_page(p)``, recomputed on every call, progress or not.

    Simplified: v5.16 also refuses a non-iovec iterator (``iter_is_iovec()``); every write the
    model runs comes from user memory, as an ITER_UBUF or ITER_IOVEC iterator (ITER_UBUF did not
    exist in v5.16, where such writes were ITER_IOVEC), so that test always passes here."""
    count = i.count
    if not count:
        return False
    if ret <= 0 and ret != -EFAULT:
        return False
    w.prev_count = count
    w.window_size = PAGE_SIZE - (user_address & (PAGE_SIZE - 1))
    return True


def _user_address(i: IovIter) -> int:
    """The user address the iterator stands at (``iter_iov_addr()``)."""
    if i.iter_type == ITER_UBUF:
        return i.ubuf + i.iov_offset
    return i.iov[i.iov_idx][0] + i.iov_offset if i.count else 0


def gfs2_file_buffered_write(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """gfs2_file_buffered_write() (fs/gfs2/file.c, v5.16): the write loop with page faults
    disabled, then, while should_fault_in_pages() says so, the window faulted in and the loop
    retried if any byte of it could be. Returns what was written, else the last error."""
    w = FaultInWindow()
    written = 0
    while True:
        # The write loop starts its own no-progress record; the retries of this loop keep theirs.
        stall_key, stalls = task.stall_key, task.stalls
        task.pagefault_disabled += 1  # pagefault_disable()
        ret = yield from task.kernel.perform_write(task, iocb, from_)
        task.pagefault_disabled -= 1  # pagefault_enable()
        if ret > 0:
            written += ret
        else:
            task.stall_key, task.stalls = stall_key, stalls
        if not should_fault_in_pages(ret, from_, _user_address(from_), w):
            break
        leftover = yield from fault_in_iov_iter_readable(task, from_, w.window_size)
        if leftover == w.window_size:
            break
        if ret <= 0:
            # The livelock detector's bookkeeping, not gfs2's: a pass that wrote nothing.
            note_no_progress(task, (iocb.ki_pos, from_.count, w.window_size))
    return written if written else ret


def gfs2_file_write_iter(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """gfs2_file_write_iter() (fs/gfs2/file.c, v5.16): inode lock, generic_write_checks(), the
    buffered write (the glock is taken inside; one node, so never contended)."""
    inode = iocb.ki_filp.f_inode
    yield from lock_acquire(task, inode.i_rwsem)
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        ret = yield from gfs2_file_buffered_write(task, iocb, from_)
    lock_release(task, inode.i_rwsem)
    return ret


def gfs2_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    """gfs2_fault() takes the glock shared around filemap_fault(); one node: filemap_fault()."""
    return (yield from filemap_fault(task, vma, pgoff))


def gfs2() -> FileSystem:
    """gfs2 on one node (lock_nolock) with its 2021 buffered write loop; order-0 folios."""
    return FileSystem(
        "gfs2",
        MAX_LFS_FILESIZE,
        0,
        True,
        ext4_aops,
        gfs2_file_write_iter,
        gfs2_fault,
    )
