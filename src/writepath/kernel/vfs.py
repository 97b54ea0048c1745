"""VFS objects: inodes, open files, kiocbs (include/linux/fs.h, fs/file_table.c).

Reduced to the fields the buffered write path reads. ``FileSystem`` is the narrow protocol every
model filesystem implements: its file_operations ``write_iter``, its vm_operations ``fault``, its
address_space_operations, and the limits the VFS checks against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from writepath.kernel.constants import PAGE_SIZE
from writepath.kernel.task import SleepingLock, Sleeps, Task, lock_acquire
from writepath.kernel.tracepoints import ENTER, EXIT

if TYPE_CHECKING:
    from writepath.kernel.iov_iter import IovIter
    from writepath.kernel.mm import VMA
    from writepath.kernel.pagecache import AddressSpace, AddressSpaceOperations, Folio

# open(2) flags the model honours (include/uapi/asm-generic/fcntl.h).
O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_APPEND = 0o2000
O_ACCMODE = 0o3

# file->f_mode bits (include/linux/fs.h), set at open from the access mode.
FMODE_READ = 0x1
FMODE_WRITE = 0x2

# kiocb->ki_flags
IOCB_APPEND = 1 << 1

# vm_fault_t bits (include/linux/mm_types.h)
VM_FAULT_SIGBUS = 0x0002
VM_FAULT_MAJOR = 0x0004
VM_FAULT_SIGSEGV = 0x0040
VM_FAULT_LOCKED = 0x0200
VM_FAULT_ERROR = VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV


WriteIter = Callable[["Task", "Kiocb", "IovIter"], "Sleeps[int]"]
Fault = Callable[["Task", "VMA", int], "Sleeps[tuple[int, Folio | None]]"]


@dataclass(frozen=True)
class FileSystem:
    """A filesystem type: the operations tables the write path calls through.

    Contract:
    - ``write_iter(task, iocb, from_)`` is ``file->f_op->write_iter``: it takes the inode lock,
      runs the VFS write checks and the filesystem's write loop; it returns bytes written or a
      negative errno and advances ``iocb.ki_pos`` by what it wrote.
    - ``fault(task, vma, pgoff)`` is ``vma->vm_ops->fault``: it returns a ``vm_fault_t`` and, on
      success, the folio that holds page ``pgoff``, locked by ``task`` (``VM_FAULT_LOCKED``).
    - ``a_ops`` are the address_space_operations (``writepath.kernel.pagecache``).
    - ``s_maxbytes`` is the largest file offset; ``max_folio_order`` what
      ``mapping_set_folio_order_range()`` allows its regular files.
    - ``backed`` says whether the page cache is a cache of a disk (ext4, xfs) or the only copy of
      the data (ramfs, tmpfs).
    """

    name: str
    s_maxbytes: int
    max_folio_order: int
    backed: bool
    a_ops: AddressSpaceOperations
    write_iter: WriteIter
    fault: Fault


class Inode:
    """struct inode with its address_space. ``disk`` holds the filesystem blocks (one page each)
    of a disk filesystem that are allocated and written; an absent block is a hole."""

    __slots__ = (
        "delalloc",
        "disk",
        "fs",
        "i_ino",
        "i_mapping",
        "i_rwsem",
        "i_size",
        "name",
    )

    def __init__(self, ino: int, fs: FileSystem, name: str) -> None:
        from writepath.kernel.pagecache import AddressSpace

        self.i_ino = ino
        self.name = name
        self.fs = fs
        self.i_size = 0
        self.i_rwsem = SleepingLock(f"i_rwsem({name})")
        self.i_mapping: AddressSpace = AddressSpace(self, fs.a_ops, fs.max_folio_order)
        self.disk: dict[int, bytes] = {}
        # Blocks with a delayed allocation (ext4, xfs): written, their data only in the cache.
        self.delalloc: set[int] = set()

    def disk_block(self, index: int) -> bytes | None:
        return self.disk.get(index)


@dataclass(slots=True)
class File:
    """struct file: an open file description. ``f_mapping`` is the inode's mapping, set at open
    as do_dentry_open() does. ``f_mode`` is set from the access mode of
    ``f_flags`` at open, as alloc_empty_file() does (OPEN_FMODE(): O_RDONLY gives FMODE_READ,
    O_WRONLY FMODE_WRITE, O_RDWR both)."""

    f_inode: Inode
    f_flags: int
    f_pos: int = 0
    f_mode: int = field(init=False)
    f_mapping: AddressSpace = field(init=False)

    def __post_init__(self) -> None:
        self.f_mode = (self.f_flags + 1) & O_ACCMODE  # OPEN_FMODE()
        self.f_mapping = self.f_inode.i_mapping

    @property
    def readable(self) -> bool:
        return (self.f_flags & O_ACCMODE) != O_WRONLY

    @property
    def writable(self) -> bool:
        """FMODE_WRITE"""
        return bool(self.f_mode & FMODE_WRITE)


@dataclass(slots=True)
class Kiocb:
    """struct kiocb (init_sync_kiocb(): IOCB_APPEND from O_APPEND)."""

    ki_filp: File
    ki_pos: int
    ki_flags: int = 0


def init_sync_kiocb(filp: File, pos: int) -> Kiocb:
    flags = IOCB_APPEND if filp.f_flags & O_APPEND else 0
    return Kiocb(filp, pos, flags)


def i_size_write(task: Task, inode: Inode, size: int) -> None:
    inode.i_size = size
    task.kernel.generation += 1


def pages_spanned(size: int) -> int:
    return (size + PAGE_SIZE - 1) // PAGE_SIZE


def inode_lock(task: Task, inode: Inode) -> Sleeps[None] | None:
    """inode_lock() (include/linux/fs.h, v6.18): down_write(&inode->i_rwsem).

    down_write() is a trylock fast path (a cmpxchg) and a sleeping slow path. A free lock is
    taken on the fast path without sleeping, and then this returns None: only the slow path is
    a generator, returned for the caller to run, so the uncontended call, the common one, costs
    no generator layer. Every caller writes
    ``if (slowpath := inode_lock(task, inode)) is not None: yield from slowpath``."""
    task.emit((ENTER, task.pid, "inode_lock", inode.i_ino))
    sem = inode.i_rwsem
    if sem.owner is None:
        sem.owner = task
        task.emit((EXIT, task.pid, "inode_lock", None))
        return None
    return _inode_lock_slowpath(task, sem)


def _inode_lock_slowpath(task: Task, sem: SleepingLock) -> Sleeps[None]:
    """rwsem_down_write_slowpath() (kernel/locking/rwsem.c): sleep until the lock is free and
    take it; then inode_lock() returns."""
    yield from lock_acquire(task, sem)
    task.emit((EXIT, task.pid, "inode_lock", None))


def inode_unlock(task: Task, inode: Inode) -> None:
    """inode_unlock() (include/linux/fs.h, v6.18): up_write(&inode->i_rwsem)."""
    emit = task.emit
    emit((ENTER, task.pid, "inode_unlock", inode.i_ino))
    sem = inode.i_rwsem
    if sem.owner is not task:
        raise AssertionError(f"{task} releases {sem.name} held by {sem.owner}")
    sem.owner = None
    emit((EXIT, task.pid, "inode_unlock", None))


def file_update_time(task: Task, file: File) -> int:
    """file_update_time() (fs/inode.c, v6.18): update mtime and ctime if they need it.

    The model keeps no timestamps, so this changes nothing the model observes; it is here as
    the event the cost model prices (a call every buffered write makes, under i_rwsem).
    Returns 0, as the kernel does when the update succeeds or is not needed."""
    emit = task.emit
    emit((ENTER, task.pid, "file_update_time", file.f_inode.i_ino))
    emit((EXIT, task.pid, "file_update_time", 0))
    return 0


def file_modified(task: Task, file: File) -> int:
    """file_modified() (fs/inode.c, v6.18), what ext4, xfs and btrfs call from their write
    checks: file_remove_privs_flags() (no setuid bits in the model: nothing to do), then the
    timestamp update. The kernel inlines that update as inode_needs_update_time() and
    __file_update_time(), the same work as file_update_time(); the model emits it under that
    one name so every filesystem's timestamp update is one event."""
    return file_update_time(task, file)
