"""ramfs: simple_write_begin/simple_write_end/simple_read_folio — fs/libfs.c (v6.12–v6.18).

ramfs has no backing store: the page cache is the file. Its write_end accepts any copy, short or
empty, zero-filling what the copy did not reach in a folio that was not uptodate.
"""

from __future__ import annotations

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import MAX_LFS_FILESIZE, PAGE_SHIFT
from writepath.kernel.filemap import filemap_fault, generic_file_write_iter
from writepath.kernel.pagecache import (
    FGP_WRITEBEGIN,
    AddressSpace,
    AddressSpaceOperations,
    Folio,
    __filemap_get_folio,
    folio_mark_dirty,
    folio_mark_uptodate,
    folio_size,
    folio_unlock,
    folio_zero_range,
    folio_zero_segments,
    offset_in_folio,
)
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import File, FileSystem, i_size_write


def simple_write_begin(
    task: Task, file: File, mapping: AddressSpace, pos: int, len: int
) -> Sleeps[tuple[int, Folio | None, object]]:
    """simple_write_begin(): a locked folio, zeroed around the range if not uptodate."""
    task.emit((tp.ENTER, task.pid, "simple_write_begin", pos))
    folio = yield from __filemap_get_folio(task, mapping, pos >> PAGE_SHIFT, FGP_WRITEBEGIN)
    assert folio is not None
    if not folio.uptodate and len != folio_size(folio):
        start = offset_in_folio(folio, pos)
        folio_zero_segments(folio, 0, start, start + len, folio_size(folio))
    task.emit((tp.EXIT, task.pid, "simple_write_begin", 0))
    return 0, folio, None


def simple_write_end(
    task: Task,
    file: File,
    mapping: AddressSpace,
    pos: int,
    len: int,
    copied: int,
    folio: Folio,
    fsdata: object,
) -> int:
    """simple_write_end(): accept ``copied`` whatever it is; i_size = pos + copied if larger
    (even when nothing was copied: a zero copy beyond EOF still moves i_size to ``pos``)."""
    task.emit((tp.ENTER, task.pid, "simple_write_end", copied))
    inode = mapping.host
    last_pos = pos + copied
    if not folio.uptodate:
        if copied < len:
            start = offset_in_folio(folio, pos)
            folio_zero_range(folio, start + copied, len - copied)
        folio_mark_uptodate(task, folio)
    if last_pos > inode.i_size:
        i_size_write(task, inode, last_pos)
    folio_mark_dirty(task, folio)
    folio_unlock(task, folio)
    task.emit((tp.EXIT, task.pid, "simple_write_end", copied))
    return copied


def simple_read_folio(task: Task, folio: Folio) -> int:
    """simple_read_folio(): a page ramfs never had reads as zeros."""
    folio_zero_range(folio, 0, folio_size(folio))
    folio_mark_uptodate(task, folio)
    return 0


ram_aops = AddressSpaceOperations(
    "ram_aops", simple_write_begin, simple_write_end, simple_read_folio
)


def ramfs() -> FileSystem:
    """ramfs (fs/ramfs/): generic_file_write_iter over ram_aops, filemap_fault for mmap."""
    return FileSystem(
        "ramfs",
        MAX_LFS_FILESIZE,
        0,
        False,
        ram_aops,
        generic_file_write_iter,
        filemap_fault,  # generic_file_vm_ops' .fault
    )
