"""xfs buffered writes through iomap — fs/xfs/xfs_file.c (v6.13–v6.18).

xfs does not use ``generic_perform_write()``: ``iomap_write_iter()`` (``writepath.kernel.fs.iomap``)
has a loop of the same shape which, as merged up to v6.18, still prefaults the source before
``iomap_write_begin()``. The same change as 665575cff098 was posted for iomap in 2025 but not
merged, so every design runs the prefaulting loop on xfs except ``proposed``, which applies that
posting (``IOMAP_LOOP`` in ``writepath.kernel.filemap``; ``../shared/reference/kernel-code.md`` §8).

Simplifications: ``xfs_file_write_checks()`` is ``generic_write_checks()`` plus the zeroing of the
old EOF block tail; post-EOF delalloc blocks are not punched out on a short write; blocks are
4 KiB.
"""

from __future__ import annotations

from writepath.kernel.buffer import zero_partial_block
from writepath.kernel.constants import MAX_LFS_FILESIZE, MAX_PAGECACHE_ORDER
from writepath.kernel.filemap import IOMAP_LOOP, filemap_fault, generic_write_checks
from writepath.kernel.fs.iomap import iomap_read_folio, iomap_write_iter
from writepath.kernel.iov_iter import IovIter
from writepath.kernel.mm import VMA
from writepath.kernel.pagecache import AddressSpace, AddressSpaceOperations, Folio
from writepath.kernel.task import Sleeps, Task, lock_acquire, lock_release
from writepath.kernel.vfs import File, FileSystem, Kiocb


def xfs_no_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    raise NotImplementedError("xfs writes through iomap_write_iter(), not ->write_begin")


def xfs_no_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    raise NotImplementedError("xfs writes through iomap_write_iter(), not ->write_end")


def xfs_file_buffered_write(task: Task, iocb: Kiocb, from_: IovIter) -> Sleeps[int]:
    """xfs_file_buffered_write(): the iolock, xfs_file_write_checks() (the generic checks, then
    zeroing of the old EOF block tail when writing beyond EOF), the iomap loop in the form the
    kernel's design gives it (``IOMAP_LOOP``)."""
    inode = iocb.ki_filp.f_inode
    yield from lock_acquire(task, inode.i_rwsem)
    ret = generic_write_checks(task, iocb, from_)
    if ret > 0:
        if iocb.ki_pos > inode.i_size:
            zero_partial_block(inode, inode.i_size, iocb.ki_pos)
        copy_first = IOMAP_LOOP[task.kernel.design] == "copy-first"
        ret = yield from iomap_write_iter(task, iocb, from_, copy_first)
    lock_release(task, inode.i_rwsem)
    return ret


def xfs_filemap_fault(task: Task, vma: VMA, pgoff: int) -> Sleeps[tuple[int, Folio | None]]:
    return (yield from filemap_fault(task, vma, pgoff))


xfs_aops = AddressSpaceOperations(
    "xfs_aops", xfs_no_write_begin, xfs_no_write_end, iomap_read_folio
)


def xfs() -> FileSystem:
    """xfs with 4 KiB blocks and large folios."""
    return FileSystem(
        "xfs",
        MAX_LFS_FILESIZE,
        MAX_PAGECACHE_ORDER,
        True,
        xfs_aops,
        xfs_file_buffered_write,
        xfs_filemap_fault,
    )
