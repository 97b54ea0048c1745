"""ftruncate(2) and the page-cache truncation under it — fs/open.c, fs/attr.c, mm/truncate.c,
mm/memory.c ``unmap_mapping_range()`` (v6.14–v6.18).

``do_sys_ftruncate()`` → ``do_truncate()`` takes ``i_rwsem``, then the filesystem's setattr calls
``truncate_setsize()``: i_size first, then ``truncate_pagecache()``: unmap the user mappings of
the pages past the new EOF, drop the folios past it (each under its folio lock, sleeping for it),
zero the tail of the folio that straddles it, unmap again.

Simplifications: one setattr for every filesystem (the disk blocks past EOF are freed and the
tail of the last block zeroed, as ext4 and xfs do through their own setattr); the mappings
unmapped are those of the calling task's mm (the scenario's one process); no ctime/mtime.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.constants import DIV_ROUND_UP, OFFSET_MASK, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import (
    Folio,
    filemap_remove_folio,
    folio_lock,
    folio_pos,
    folio_size,
    folio_unlock,
    folio_zero_range,
)
from writepath.kernel.task import SYSCALL_ENTRY, Sleeps, Task
from writepath.kernel.vfs import Inode, i_size_write, inode_lock, inode_unlock

EBADF: Final = 9
EINVAL: Final = 22
EFBIG: Final = 27


def unmap_mapping_folios(task: Task, folios: list[Folio]) -> None:
    """unmap_mapping_range() for the given folios: zap every PTE that maps their memory."""
    datas = {id(f.data) for f in folios}
    pte = task.mm.pte
    gone = [vpn for vpn, (buf, _) in pte.items() if id(buf) in datas]
    for vpn in gone:
        del pte[vpn]
    if gone:
        task.kernel.generation += 1


def truncate_inode_pages_range(task: Task, inode: Inode, lstart: int) -> Sleeps[None]:
    """truncate_inode_pages(mapping, lstart): folios wholly past ``lstart`` are removed, the one
    straddling it is zeroed from ``lstart`` on (truncate_inode_partial_folio()); each under its
    folio lock."""
    mapping = inode.i_mapping
    first = DIV_ROUND_UP(lstart, PAGE_SIZE)
    seen: set[int] = set()
    for index in sorted(mapping.i_pages):
        folio = mapping.i_pages.get(index)
        if folio is None or id(folio) in seen:
            continue
        seen.add(id(folio))
        end = folio_pos(folio) + folio_size(folio)
        if end <= lstart:
            continue
        yield from folio_lock(task, folio)
        if mapping.i_pages.get(folio.index) is not folio:  # removed while we slept
            folio_unlock(task, folio)
            continue
        if folio.index >= first:
            unmap_mapping_folios(task, [folio])
            filemap_remove_folio(task, folio)
        else:
            off = lstart - folio_pos(folio)
            folio_zero_range(folio, off, folio_size(folio) - off)
            task.kernel.generation += 1
        folio_unlock(task, folio)
    for index in [i for i in inode.disk if i >= first]:
        del inode.disk[index]
    if lstart & OFFSET_MASK:
        index = lstart >> PAGE_SHIFT
        block = inode.disk.get(index)
        if block is not None:
            off = lstart & OFFSET_MASK
            inode.disk[index] = bytes(block[:off]) + bytes(PAGE_SIZE - off)


def truncate_setsize(task: Task, inode: Inode, newsize: int) -> Sleeps[None]:
    """truncate_setsize() (mm/truncate.c): i_size, then the page cache past it."""
    oldsize = inode.i_size
    i_size_write(task, inode, newsize)
    if newsize < oldsize:
        yield from truncate_inode_pages_range(task, inode, newsize)


def do_sys_ftruncate(task: Task, fd: int, length: int) -> Sleeps[int]:
    """ftruncate(2) (fs/open.c): a file open for writing, a length within s_maxbytes, then
    do_truncate() under i_rwsem."""
    yield SYSCALL_ENTRY
    if length < 0:
        return -EINVAL
    file = task.files.get(fd)
    if file is None:
        return -EBADF
    inode = file.f_inode
    if length > inode.fs.s_maxbytes:
        return -EFBIG
    if (slowpath := inode_lock(task, inode)) is not None:
        yield from slowpath
    yield from truncate_setsize(task, inode, length)
    inode_unlock(task, inode)
    return 0
