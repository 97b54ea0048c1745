"""The write system calls and lseek — fs/read_write.c, with import_iovec() from lib/iov_iter.c.

Follows v6.12–v6.18: ``ksys_write``, ``ksys_pwrite64``, ``do_writev``, ``do_pwritev``,
``vfs_write``, ``vfs_writev``, ``rw_verify_area``, ``new_sync_write``, ``ksys_lseek`` and
``generic_file_llseek_size``. Arguments arrive as the user passed them; the iovec array itself is
taken to be readable (its copy from user memory is one user-access window, and is emitted as one).
A one-segment vector is imported as ITER_UBUF, as since v6.4.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import LLONG_MAX, MAX_RW_COUNT, UIO_MAXIOV
from writepath.kernel.iov_iter import (
    ITER_SOURCE,
    ITER_UBUF,
    IovIter,
    iov_iter_init,
    iov_iter_ubuf,
)
from writepath.kernel.task import SYSCALL_ENTRY, Sleeps, T, Task
from writepath.kernel.uaccess import USER_END, access_ok
from writepath.kernel.vfs import (
    FMODE_WRITE,
    IOCB_APPEND,
    O_APPEND,
    File,
    Kiocb,
    init_sync_kiocb,
)

EBADF: Final = 9
EFAULT: Final = 14
EINVAL: Final = 22
SSIZE_MAX: Final = LLONG_MAX

SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

#: A write started by new_sync_write(): its kiocb (None when the write failed before one was
#: built) and the ->write_iter call that returns bytes written or -errno.
SyncWrite = tuple[Kiocb | None, Sleeps[int]]


def rw_verify_area(pos: int | None, count: int) -> int:
    """Negative counts and positions, and positions that overflow loff_t, are -EINVAL."""
    if count < 0 or count > SSIZE_MAX:
        return -EINVAL
    if pos is not None and (pos < 0 or pos + count > LLONG_MAX):
        return -EINVAL
    return 0


def new_sync_write(task: Task, file: File, buf: int, count: int, pos: int) -> SyncWrite:
    """Build a kiocb and an ITER_UBUF iterator and start ->write_iter; init_sync_kiocb() and
    iov_iter_ubuf() are static inlines, inlined here too.

    Returns the kiocb and the ->write_iter call, which the caller runs. The kernel's
    new_sync_write() ends with ``if (ret > 0) *ppos = kiocb.ki_pos``: the model has no pointer
    to the caller's loff_t, so the caller does that store itself, from the kiocb (only write(2)
    keeps it: pwrite(2)'s position is a copy the call discards). Running ->write_iter here
    would make this a generator layer that every write passes through for that one store."""
    iocb = Kiocb(file, pos, IOCB_APPEND if file.f_flags & O_APPEND else 0)
    it = IovIter(ITER_UBUF, ITER_SOURCE, count, buf)
    return iocb, file.f_inode.fs.write_iter(task, iocb, it)


def vfs_write(task: Task, file: File, buf: int, count: int, pos: int) -> SyncWrite:
    """The checks, then new_sync_write(), as a tail call. What the kernel does after it
    (fsnotify_modify(), the task's I/O accounting) changes nothing the model observes. Returns
    new_sync_write()'s kiocb (None after an early error) and the call to run, which returns
    the result; an early error is a call that returns at once."""
    if not file.f_mode & FMODE_WRITE:
        return None, _returns(-EBADF)
    end = buf + count  # access_ok(buf, count), an inline
    if buf < 0 or end > USER_END or end < buf:
        return None, _returns(-EFAULT)
    ret = rw_verify_area(pos, count)
    if ret:
        return None, _returns(ret)
    if count > MAX_RW_COUNT:
        count = MAX_RW_COUNT
    return new_sync_write(task, file, buf, count, pos)


def _returns(value: T) -> Sleeps[T]:
    """A generator that returns ``value`` without sleeping: the result of a function that hands
    back its callee's generator, where it returns before the call."""
    return value
    yield  # a generator function: never reached


def _fdget(task: Task, fd: int) -> File | None:
    return task.files.get(fd)


def ksys_write(task: Task, fd: int, buf: int, count: int) -> Sleeps[int]:
    """write(2): at and advancing the file position (``f_pos``)."""
    task.emit((tp.ENTER, task.pid, "ksys_write", count))
    yield SYSCALL_ENTRY
    file = _fdget(task, fd)
    if file is None:
        ret = -EBADF
    else:
        iocb, call = vfs_write(task, file, buf, count, file.f_pos)
        ret = yield from call
        if ret > 0 and iocb is not None:
            file.f_pos = iocb.ki_pos  # new_sync_write()'s *ppos, then ksys_write()'s f_pos
    task.emit((tp.EXIT, task.pid, "ksys_write", ret))
    return ret


def ksys_pwrite64(task: Task, fd: int, buf: int, count: int, pos: int) -> Sleeps[int]:
    """pwrite(2): at ``pos``; the file position does not move (O_APPEND still appends)."""
    task.emit((tp.ENTER, task.pid, "ksys_pwrite64", count))
    yield SYSCALL_ENTRY
    file = task.files.get(fd)  # fdget()
    if pos < 0:
        ret = -EINVAL
    elif file is None:
        ret = -EBADF
    else:
        ret = yield from vfs_write(task, file, buf, count, pos)[1]
    task.emit((tp.EXIT, task.pid, "ksys_pwrite64", ret))
    return ret


def import_iovec(task: Task, vec: list[tuple[int, int]]) -> tuple[int, IovIter | None]:
    """__import_iovec(): copy the vector in, check it, build the iterator; (total or -errno)."""
    nr_segs = len(vec)
    if nr_segs > UIO_MAXIOV:
        return -EINVAL, None
    if nr_segs:
        # copy_iovec_from_user(): one user-access window over the array.
        task.emit((tp.STAC, task.pid, None, nr_segs * 16))
        task.emit((tp.CLAC, task.pid, None, None))
    for _, length in vec:
        if length < 0 or length > SSIZE_MAX:
            return -EINVAL, None
    if nr_segs == 1:
        base, length = vec[0]
        if length > MAX_RW_COUNT:
            length = MAX_RW_COUNT
        if not access_ok(base, length):
            return -EFAULT, None
        return length, iov_iter_ubuf(ITER_SOURCE, base, length)
    total = 0
    segs: list[tuple[int, int]] = []
    for base, length in vec:
        if not access_ok(base, length):
            return -EFAULT, None
        if length > MAX_RW_COUNT - total:
            length = MAX_RW_COUNT - total
        segs.append((base, length))
        total += length
    return total, iov_iter_init(ITER_SOURCE, segs, total)


def vfs_writev(
    task: Task, file: File, vec: list[tuple[int, int]], pos: int
) -> Sleeps[tuple[int, int]]:
    if not file.f_mode & FMODE_WRITE:
        return -EBADF, pos
    tot_len, it = import_iovec(task, vec)
    if tot_len < 0 or it is None:
        return tot_len, pos
    if not tot_len:
        return 0, pos
    ret = rw_verify_area(pos, tot_len)
    if ret < 0:
        return ret, pos
    # do_iter_readv_writev()
    iocb = init_sync_kiocb(file, pos)
    ret = yield from file.f_inode.fs.write_iter(task, iocb, it)
    return ret, iocb.ki_pos if ret > 0 else pos


def do_writev(task: Task, fd: int, vec: list[tuple[int, int]]) -> Sleeps[int]:
    """writev(2)."""
    task.emit((tp.ENTER, task.pid, "do_writev", len(vec)))
    yield SYSCALL_ENTRY
    file = _fdget(task, fd)
    if file is None:
        ret = -EBADF
    else:
        ret, pos = yield from vfs_writev(task, file, vec, file.f_pos)
        if ret >= 0:
            file.f_pos = pos
    task.emit((tp.EXIT, task.pid, "do_writev", ret))
    return ret


def do_pwritev(task: Task, fd: int, vec: list[tuple[int, int]], pos: int) -> Sleeps[int]:
    """pwritev(2)."""
    task.emit((tp.ENTER, task.pid, "do_pwritev", len(vec)))
    yield SYSCALL_ENTRY
    file = _fdget(task, fd)
    if pos < 0:
        ret = -EINVAL
    elif file is None:
        ret = -EBADF
    else:
        ret, _ = yield from vfs_writev(task, file, vec, pos)
    task.emit((tp.EXIT, task.pid, "do_pwritev", ret))
    return ret


def ksys_lseek(task: Task, fd: int, offset: int, whence: int) -> Sleeps[int]:
    """lseek(2) through generic_file_llseek_size() (tmpfs, ext4, xfs and ramfs all end there
    for SEEK_SET/SEEK_CUR/SEEK_END)."""
    task.emit((tp.ENTER, task.pid, "ksys_lseek", offset))
    yield SYSCALL_ENTRY
    file = _fdget(task, fd)
    if file is None:
        ret = -EBADF
    elif whence == SEEK_END:
        ret = _vfs_setpos(file, offset + file.f_inode.i_size)
    elif whence == SEEK_CUR:
        ret = file.f_pos if offset == 0 else _vfs_setpos(file, offset + file.f_pos)
    elif whence == SEEK_SET:
        ret = _vfs_setpos(file, offset)
    else:
        ret = -EINVAL
    task.emit((tp.EXIT, task.pid, "ksys_lseek", ret))
    return ret


def _vfs_setpos(file: File, offset: int) -> int:
    if offset < 0 or offset > file.f_inode.fs.s_maxbytes:
        return -EINVAL
    file.f_pos = offset
    return offset
