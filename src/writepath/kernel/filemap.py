"""generic_perform_write() in each design, and the VFS write entry around it — mm/filemap.c.

The designs, each a transliteration of one version (or one broken variant) of the loop, to be read
beside the C (``../shared/reference/kernel-code.md`` §1–2):

``v6.13``           prefault the chunk with ``fault_in_iov_iter_readable()``, then copy atomically.
``v6.14``           665575cff098: copy atomically first; fault in only after a copy made no
                    progress, once the folio is unlocked again.
``no-fault-in``     v6.14 without the late fault-in: a non-resident source spins forever.
``faulting-copy``   v6.14 with a copy that may take page faults while the folio is locked: a
                    source mapping that very folio waits for its own lock.
``any-byte-check``  v6.13 with the 2021 gfs2 prefault check: give up if *any* byte of the chunk
                    cannot be faulted in, not only if none can.
``v6.16``           v6.14's generic loop; fuse's ``fuse_perform_write()`` took the same change
                    in this release (faa794dd2e17).
``v6.18``           this machine's kernel: the generic loop and fuse copy first; iomap (xfs) and
                    btrfs still prefault.
``proposed``        v6.18 with the copy-first change applied to the loops that have not taken it:
                    iomap (as posted in 2025, not merged) and btrfs (as posted in January 2025,
                    not merged; facts.md §3).

A design names a kernel, so it fixes the form of every buffered write loop, not only this one:
``LOOP_FORMS`` says, per design, whether each loop prefaults the source ("prefault") or copies
first ("copy-first"). The broken designs change only the generic loop; the other loops keep the
form of the release the broken design starts from (v6.14 for no-fault-in and faulting-copy,
v6.13 for any-byte-check).

Every loop has write_begin, the copy, write_end and the revert of what write_end refused inline,
as the C does. The designs of the v6.13 loop copy with ``copy_page_from_iter_atomic()`` of their
time; the others with ``copy_folio_from_iter_atomic()`` of v6.16+, the kernel the filesystems
here follow (ext4 large folios) and the oracle runs: its retry after a short copy is a second
fault at the same address, which the real kernel's trace shows. The loops also tell
the livelock detector (``note_no_progress``) about iterations that made no progress: that is the
model's bookkeeping, not kernel code, and it changes nothing the loop does.

``balance_dirty_pages_ratelimited()`` is called where the kernel calls it, at the top of every
pass after the ``retry:`` label (so a pass retried with fewer bytes calls it again); with no
writeback in the model it only marks the event. Not modelled: ``flush_dcache_folio()`` (a
no-op on x86). ``fatal_signal_pending()`` is true once another task sent a fatal signal
(``writepath.kernel.signal``): each loop tests it before write_begin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import PAGE_SIZE
from writepath.kernel.iov_iter import (
    IovIter,
    __copy_from_iter,
    copy_folio_from_iter_atomic,
    copy_page_from_iter_atomic,
    fault_in_iov_iter_readable,
    iov_iter_current_addr,
    iov_iter_revert,
)
from writepath.kernel.mm import do_user_addr_fault
from writepath.kernel.pagecache import (
    Folio,
    balance_dirty_pages_ratelimited,
    write_ops,
)

# filemap_fault() is in mm/filemap.c; its model sits with the read-around it starts.
from writepath.kernel.readahead import filemap_fault as filemap_fault
from writepath.kernel.signal import SIGKILL
from writepath.kernel.task import (
    COND_RESCHED,
    PAGE_FAULT,
    Sleeps,
    Task,
    note_no_progress,
    note_progress,
)
from writepath.kernel.vfs import (
    IOCB_APPEND,
    File,
    Kiocb,
    file_update_time,
    inode_lock,
    inode_unlock,
)

EFAULT: Final = 14
EFBIG: Final = 27
EINTR: Final = 4

PerformWrite = Callable[[Task, Kiocb, IovIter], Sleeps[int]]


def copy_folio_from_iter_faulting(
    task: Task, folio: Folio, offset: int, nbytes: int, i: IovIter
) -> Sleeps[int]:
    """The broken ``faulting-copy``: copy with page faults *enabled* while the folio is locked.

    Modelled as the CPU does it: copy what is present; at the first page that is not, take the
    fault (which may sleep, and may need the very folio lock the caller holds), then go on.
    """
    task.emit((tp.ENTER, task.pid, "copy_folio_from_iter", nbytes))
    copied = 0
    while copied < nbytes:
        n = __copy_from_iter(
            task, folio.data, offset + copied, nbytes - copied, i, "copy_folio_from_iter"
        )
        copied += n
        if copied == nbytes or not i.count:
            break
        yield PAGE_FAULT
        if not (yield from do_user_addr_fault(task, iov_iter_current_addr(i))):
            break
    task.emit((tp.COPY, task.pid, nbytes, copied))
    task.emit((tp.EXIT, task.pid, "copy_folio_from_iter", copied))
    return copied


def generic_perform_write_v6_13(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """generic_perform_write() of v6.13 (mm/filemap.c): prefault, then copy atomically."""
    task.emit((tp.ENTER, task.pid, "generic_perform_write", i.count))
    task.stall_key = None  # note_loop_start(), inline
    task.stalls = 0
    file = iocb.ki_filp
    pos = iocb.ki_pos
    mapping = file.f_mapping
    a_ops = mapping.a_ops
    write_begin, write_end = write_ops(a_ops)
    chunk = PAGE_SIZE << mapping.max_order  # mapping_max_folio_size(), an inline
    status = 0
    written = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        offset = pos & (chunk - 1)
        if nbytes > chunk - offset:
            nbytes = chunk - offset
        balance_dirty_pages_ratelimited(task, mapping)
        # Bring in the source first: the "deadlock" comment of v6.13.
        if (yield from fault_in_iov_iter_readable(task, i, nbytes)) == nbytes:
            status = -EFAULT
            break
        if SIGKILL in task.signals:  # fatal_signal_pending(), an inline
            status = -EINTR
            break
        status, folio, fsdata = yield from write_begin(task, file, mapping, pos, nbytes)
        if status < 0 or folio is None:
            break
        size = PAGE_SIZE << folio.order  # folio_size() and offset_in_folio(), inlines
        offset = pos & (size - 1)
        if nbytes > size - offset:
            nbytes = size - offset
        copied = copy_page_from_iter_atomic(task, folio, offset, nbytes, i)
        status = write_end(task, file, mapping, pos, nbytes, copied, folio, fsdata)
        if status != copied:
            iov_iter_revert(i, copied - max(status, 0))
            if status < 0:
                break
        yield COND_RESCHED
        if status == 0:
            task.emit((tp.RETRY, task.pid, pos, nbytes))
            note_no_progress(task, (pos, i.count, chunk, nbytes))
            if chunk > PAGE_SIZE:
                chunk //= 2
            if copied:
                nbytes = copied
                retry = True
                continue
        else:
            if task.stalls:
                note_progress(task)
            pos += status
            written += status
        if not i.count:
            break
    if not written:
        task.emit((tp.EXIT, task.pid, "generic_perform_write", status))
        return status
    iocb.ki_pos += written
    task.emit((tp.EXIT, task.pid, "generic_perform_write", written))
    return written


def generic_perform_write_v6_14(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """generic_perform_write() after 665575cff098 (v6.14+, mm/filemap.c): copy first with page
    faults disabled; only when a copy made no progress, fault the source in, folio unlocked."""
    task.emit((tp.ENTER, task.pid, "generic_perform_write", i.count))
    task.stall_key = None  # note_loop_start(), inline
    task.stalls = 0
    file = iocb.ki_filp
    pos = iocb.ki_pos
    mapping = file.f_mapping
    a_ops = mapping.a_ops
    write_begin, write_end = write_ops(a_ops)
    chunk = PAGE_SIZE << mapping.max_order  # mapping_max_folio_size(), an inline
    status = 0
    written = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        offset = pos & (chunk - 1)
        if nbytes > chunk - offset:
            nbytes = chunk - offset
        balance_dirty_pages_ratelimited(task, mapping)
        if SIGKILL in task.signals:  # fatal_signal_pending(), an inline
            status = -EINTR
            break
        status, folio, fsdata = yield from write_begin(task, file, mapping, pos, nbytes)
        if status < 0 or folio is None:
            break
        size = PAGE_SIZE << folio.order  # folio_size() and offset_in_folio(), inlines
        offset = pos & (size - 1)
        if nbytes > size - offset:
            nbytes = size - offset
        copied = copy_folio_from_iter_atomic(task, folio, offset, nbytes, i)
        status = write_end(task, file, mapping, pos, nbytes, copied, folio, fsdata)
        if status != copied:
            iov_iter_revert(i, copied - max(status, 0))
            if status < 0:
                break
        yield COND_RESCHED
        if status == 0:
            task.emit((tp.RETRY, task.pid, pos, nbytes))
            note_no_progress(task, (pos, i.count, chunk, nbytes))
            if chunk > PAGE_SIZE:
                chunk //= 2
            if copied:
                nbytes = copied
                retry = True
                continue
            # The folio is unlocked: a fault on it can be handled now.
            if (yield from fault_in_iov_iter_readable(task, i, nbytes)) == nbytes:
                status = -EFAULT
                break
        else:
            if task.stalls:
                note_progress(task)
            pos += status
            written += status
        if not i.count:
            break
    if not written:
        task.emit((tp.EXIT, task.pid, "generic_perform_write", status))
        return status
    iocb.ki_pos += written
    task.emit((tp.EXIT, task.pid, "generic_perform_write", written))
    return written


def generic_perform_write_no_fault_in(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """Broken: v6.14 without the late fault-in. A copy that makes no progress because the source
    is not resident is retried as it is, forever: nothing ever faults the source in."""
    task.emit((tp.ENTER, task.pid, "generic_perform_write", i.count))
    task.stall_key = None  # note_loop_start(), inline
    task.stalls = 0
    file = iocb.ki_filp
    pos = iocb.ki_pos
    mapping = file.f_mapping
    a_ops = mapping.a_ops
    write_begin, write_end = write_ops(a_ops)
    chunk = PAGE_SIZE << mapping.max_order  # mapping_max_folio_size(), an inline
    status = 0
    written = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        offset = pos & (chunk - 1)
        if nbytes > chunk - offset:
            nbytes = chunk - offset
        balance_dirty_pages_ratelimited(task, mapping)
        if SIGKILL in task.signals:  # fatal_signal_pending(), an inline
            status = -EINTR
            break
        status, folio, fsdata = yield from write_begin(task, file, mapping, pos, nbytes)
        if status < 0 or folio is None:
            break
        size = PAGE_SIZE << folio.order  # folio_size() and offset_in_folio(), inlines
        offset = pos & (size - 1)
        if nbytes > size - offset:
            nbytes = size - offset
        copied = copy_folio_from_iter_atomic(task, folio, offset, nbytes, i)
        status = write_end(task, file, mapping, pos, nbytes, copied, folio, fsdata)
        if status != copied:
            iov_iter_revert(i, copied - max(status, 0))
            if status < 0:
                break
        yield COND_RESCHED
        if status == 0:
            task.emit((tp.RETRY, task.pid, pos, nbytes))
            note_no_progress(task, (pos, i.count, chunk, nbytes))
            if chunk > PAGE_SIZE:
                chunk //= 2
            if copied:
                nbytes = copied
                retry = True
                continue
        else:
            if task.stalls:
                note_progress(task)
            pos += status
            written += status
        if not i.count:
            break
    if not written:
        task.emit((tp.EXIT, task.pid, "generic_perform_write", status))
        return status
    iocb.ki_pos += written
    task.emit((tp.EXIT, task.pid, "generic_perform_write", written))
    return written


def generic_perform_write_faulting_copy(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """Broken: v6.14 with a copy that takes page faults while ``write_begin``'s folio lock is
    held. A source page that maps the folio being written faults into ``filemap_fault()``, which
    waits for that folio's lock: held by this very task."""
    task.emit((tp.ENTER, task.pid, "generic_perform_write", i.count))
    task.stall_key = None  # note_loop_start(), inline
    task.stalls = 0
    file = iocb.ki_filp
    pos = iocb.ki_pos
    mapping = file.f_mapping
    a_ops = mapping.a_ops
    write_begin, write_end = write_ops(a_ops)
    chunk = PAGE_SIZE << mapping.max_order  # mapping_max_folio_size(), an inline
    status = 0
    written = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        offset = pos & (chunk - 1)
        if nbytes > chunk - offset:
            nbytes = chunk - offset
        balance_dirty_pages_ratelimited(task, mapping)
        if SIGKILL in task.signals:  # fatal_signal_pending(), an inline
            status = -EINTR
            break
        status, folio, fsdata = yield from write_begin(task, file, mapping, pos, nbytes)
        if status < 0 or folio is None:
            break
        size = PAGE_SIZE << folio.order  # folio_size() and offset_in_folio(), inlines
        offset = pos & (size - 1)
        if nbytes > size - offset:
            nbytes = size - offset
        copied = yield from copy_folio_from_iter_faulting(task, folio, offset, nbytes, i)
        status = write_end(task, file, mapping, pos, nbytes, copied, folio, fsdata)
        if status != copied:
            iov_iter_revert(i, copied - max(status, 0))
            if status < 0:
                break
        yield COND_RESCHED
        if status == 0:
            task.emit((tp.RETRY, task.pid, pos, nbytes))
            note_no_progress(task, (pos, i.count, chunk, nbytes))
            if chunk > PAGE_SIZE:
                chunk //= 2
            if copied:
                nbytes = copied
                retry = True
                continue
            if (yield from fault_in_iov_iter_readable(task, i, nbytes)) == nbytes:
                status = -EFAULT
                break
        else:
            if task.stalls:
                note_progress(task)
            pos += status
            written += status
        if not i.count:
            break
    if not written:
        task.emit((tp.EXIT, task.pid, "generic_perform_write", status))
        return status
    iocb.ki_pos += written
    task.emit((tp.EXIT, task.pid, "generic_perform_write", written))
    return written


def generic_perform_write_any_byte_check(task: Task, iocb: Kiocb, i: IovIter) -> Sleeps[int]:
    """Broken: v6.13 with the prefault test written as in gfs2 before its 2021 fix, ``if
    (fault_in_iov_iter_readable(i, bytes))``: any byte that cannot be faulted in fails the chunk
    with -EFAULT, so a chunk that is only partly readable writes nothing of its readable part."""
    task.emit((tp.ENTER, task.pid, "generic_perform_write", i.count))
    task.stall_key = None  # note_loop_start(), inline
    task.stalls = 0
    file = iocb.ki_filp
    pos = iocb.ki_pos
    mapping = file.f_mapping
    a_ops = mapping.a_ops
    write_begin, write_end = write_ops(a_ops)
    chunk = PAGE_SIZE << mapping.max_order  # mapping_max_folio_size(), an inline
    status = 0
    written = 0
    retry = False
    nbytes = 0
    while True:
        if not retry:
            nbytes = i.count
        retry = False
        offset = pos & (chunk - 1)
        if nbytes > chunk - offset:
            nbytes = chunk - offset
        balance_dirty_pages_ratelimited(task, mapping)
        if (yield from fault_in_iov_iter_readable(task, i, nbytes)) != 0:
            status = -EFAULT
            break
        if SIGKILL in task.signals:  # fatal_signal_pending(), an inline
            status = -EINTR
            break
        status, folio, fsdata = yield from write_begin(task, file, mapping, pos, nbytes)
        if status < 0 or folio is None:
            break
        size = PAGE_SIZE << folio.order  # folio_size() and offset_in_folio(), inlines
        offset = pos & (size - 1)
        if nbytes > size - offset:
            nbytes = size - offset
        copied = copy_page_from_iter_atomic(task, folio, offset, nbytes, i)
        status = write_end(task, file, mapping, pos, nbytes, copied, folio, fsdata)
        if status != copied:
            iov_iter_revert(i, copied - max(status, 0))
            if status < 0:
                break
        yield COND_RESCHED
        if status == 0:
            task.emit((tp.RETRY, task.pid, pos, nbytes))
            note_no_progress(task, (pos, i.count, chunk, nbytes))
            if chunk > PAGE_SIZE:
                chunk //= 2
            if copied:
                nbytes = copied
                retry = True
                continue
        else:
            if task.stalls:
                note_progress(task)
            pos += status
            written += status
        if not i.count:
            break
    if not written:
        task.emit((tp.EXIT, task.pid, "generic_perform_write", status))
        return status
    iocb.ki_pos += written
    task.emit((tp.EXIT, task.pid, "generic_perform_write", written))
    return written


#: The designs by name, in the order tables show them.
DESIGNS: dict[str, PerformWrite] = {
    "v6.13": generic_perform_write_v6_13,
    "v6.14": generic_perform_write_v6_14,
    "no-fault-in": generic_perform_write_no_fault_in,
    "faulting-copy": generic_perform_write_faulting_copy,
    "any-byte-check": generic_perform_write_any_byte_check,
    "v6.16": generic_perform_write_v6_14,
    "v6.18": generic_perform_write_v6_14,
    "proposed": generic_perform_write_v6_14,
}

#: Where each buffered write loop faults the source in, per design: "prefault" (before the folio
#: is locked, as before 665575cff098) or "copy-first" (only after a copy made no progress).
#: The loops: mm/filemap.c generic_perform_write(), fs/iomap/buffered-io.c iomap_write_iter(),
#: fs/btrfs/file.c btrfs_buffered_write() (copy_one_range() from v6.15), fs/fuse/file.c
#: fuse_perform_write() (fuse_fill_write_pages()).
LOOP_FORMS: dict[str, dict[str, str]] = {
    "v6.13": {
        "generic_perform_write": "prefault",
        "iomap_write_iter": "prefault",
        "btrfs_buffered_write": "prefault",
        "fuse_perform_write": "prefault",
    },
    "v6.14": {
        "generic_perform_write": "copy-first",
        "iomap_write_iter": "prefault",
        "btrfs_buffered_write": "prefault",
        "fuse_perform_write": "prefault",
    },
    "v6.16": {
        "generic_perform_write": "copy-first",
        "iomap_write_iter": "prefault",
        "btrfs_buffered_write": "prefault",
        "fuse_perform_write": "copy-first",
    },
    "v6.18": {
        "generic_perform_write": "copy-first",
        "iomap_write_iter": "prefault",
        "btrfs_buffered_write": "prefault",
        "fuse_perform_write": "copy-first",
    },
    "proposed": {
        "generic_perform_write": "copy-first",
        "iomap_write_iter": "copy-first",
        "btrfs_buffered_write": "copy-first",
        "fuse_perform_write": "copy-first",
    },
}
LOOP_FORMS["no-fault-in"] = {**LOOP_FORMS["v6.14"], "generic_perform_write": "no-fault-in"}
LOOP_FORMS["faulting-copy"] = {**LOOP_FORMS["v6.14"], "generic_perform_write": "faulting-copy"}
LOOP_FORMS["any-byte-check"] = {**LOOP_FORMS["v6.13"], "generic_perform_write": "any-byte-check"}

#: The form of iomap_write_iter() under each design (kept for the callers that read it).
IOMAP_LOOP: dict[str, str] = {d: forms["iomap_write_iter"] for d, forms in LOOP_FORMS.items()}


def loop_copies_first(task: Task, loop: str) -> bool:
    """Whether ``loop`` copies before it faults the source in, in the kernel ``task`` runs on."""
    return LOOP_FORMS[task.kernel.design][loop] == "copy-first"


def generic_write_check_limits(task: Task, file: File, pos: int, count: int) -> tuple[int, int]:
    """RLIMIT_FSIZE and s_maxbytes (mm/filemap.c); returns (error, allowed count).

    O_LARGEFILE is always set on x86_64 (force_o_largefile()), so MAX_NON_LFS never applies."""
    limit = task.rlimit_fsize
    if limit is not None:
        if pos >= limit:
            task.signals.append("SIGXFSZ")
            return -EFBIG, count
        count = min(count, limit - pos)
    max_size = file.f_inode.fs.s_maxbytes
    if pos >= max_size:
        return -EFBIG, count
    if count > max_size - pos:
        count = max_size - pos
    return 0, count


def generic_write_checks(task: Task, iocb: Kiocb, from_: IovIter) -> int:
    """O_APPEND positioning and the size limits (mm/filemap.c); the bytes that may be written."""
    if not from_.count:
        return 0
    if iocb.ki_flags & IOCB_APPEND:
        iocb.ki_pos = iocb.ki_filp.f_inode.i_size
    err, count = generic_write_check_limits(task, iocb.ki_filp, iocb.ki_pos, from_.count)
    if err:
        return err
    if from_.count > count:  # iov_iter_truncate(), an inline
        from_.count = count
    return from_.count


def __generic_file_write_iter(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """Buffered case only (mm/filemap.c, v6.18): ``file_remove_privs()`` (no setuid bits in the
    model: nothing to do), ``file_update_time()``, then the write loop. Not a generator layer
    of its own: it hands back the write loop's generator, which the caller runs."""
    file_update_time(task, iocb.ki_filp)
    return task.kernel.perform_write(task, iocb, from_)


def generic_file_write_iter(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """The write_iter of ramfs and of other simple filesystems (mm/filemap.c)."""
    inode = iocb.ki_filp.f_inode
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        ret = yield from __generic_file_write_iter(task, iocb, from_)
    inode_unlock(task, inode)
    return ret
