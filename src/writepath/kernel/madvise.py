"""madvise(2), munmap(2) and mprotect(2) — mm/madvise.c, mm/vma.c, mm/mprotect.c (v6.14–v6.18).

The calls a racing thread makes on the writer's source buffer. Each checks its range as the
kernel does (page-aligned start, a range wholly mapped), takes the mmap lock in the mode its
kernel function takes it, and changes VMAs and page tables through ``writepath.kernel.mm``.

Simplifications: only MADV_DONTNEED among the advices; mprotect's PTE change is a zap (see
``writepath.kernel.mm``); no VMA merging after mprotect (the split halves stay apart).
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.constants import OFFSET_MASK, PAGE_ALIGN
from writepath.kernel.mm import (
    MM,
    do_munmap,
    mmap_read_lock,
    mmap_read_unlock,
    mmap_write_lock,
    mmap_write_unlock,
    split_vma,
    zap_page_range,
)
from writepath.kernel.task import SYSCALL_ENTRY, Sleeps, Task

EINVAL: Final = 22
ENOMEM: Final = 12

MADV_DONTNEED: Final = 4
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2


def _range_mapped(mm: MM, start: int, end: int) -> bool:
    """Every page of [start, end) lies in some VMA (madvise and mprotect fail with ENOMEM on a
    hole)."""
    addr = start
    while addr < end:
        vma = mm.find_vma(addr)
        if vma is None:
            return False
        addr = vma.vm_end
    return True


def do_madvise(task: Task, start: int, len_in: int, behavior: int) -> Sleeps[int]:
    """do_madvise() (mm/madvise.c) for MADV_DONTNEED: zap the PTEs of the range, so the next
    access faults again; anonymous memory then reads zeros, a file mapping the page cache. Takes
    the mmap lock for reading: it runs beside page faults, not between them."""
    yield SYSCALL_ENTRY
    if start & OFFSET_MASK or behavior != MADV_DONTNEED:
        return -EINVAL
    end = start + PAGE_ALIGN(len_in)
    if end == start:
        return 0
    mm = task.mm
    yield from mmap_read_lock(task, mm)
    mapped = _range_mapped(mm, start, end)
    if mapped:
        zap_page_range(task, mm, start, end)
    mmap_read_unlock(task, mm)
    return 0 if mapped else -ENOMEM


def __vm_munmap(task: Task, start: int, len_in: int) -> Sleeps[int]:
    """munmap(2) (mm/vma.c): the mmap lock for writing, then do_vmi_munmap()."""
    yield SYSCALL_ENTRY
    if start & OFFSET_MASK or len_in == 0:
        return -EINVAL
    mm = task.mm
    yield from mmap_write_lock(task, mm)
    do_munmap(task, mm, start, PAGE_ALIGN(len_in))
    mmap_write_unlock(task, mm)
    return 0


def do_mprotect_pkey(task: Task, start: int, len_in: int, prot: int) -> Sleeps[int]:
    """mprotect(2) (mm/mprotect.c): under the mmap lock for writing, split the VMAs at the ends
    of the range and give each its new protection; an access that the new protection refuses
    faults (the zap) and the fault handler refuses it."""
    yield SYSCALL_ENTRY
    if start & OFFSET_MASK:
        return -EINVAL
    end = start + PAGE_ALIGN(len_in)
    mm = task.mm
    yield from mmap_write_lock(task, mm)
    if not _range_mapped(mm, start, end):
        mmap_write_unlock(task, mm)
        return -ENOMEM
    split_vma(mm, start)
    split_vma(mm, end)
    for vma in mm.vmas:
        if start <= vma.vm_start and vma.vm_end <= end:
            vma.readable = bool(prot & PROT_READ)
            vma.writable = bool(prot & PROT_WRITE)
    if not prot & PROT_READ:
        zap_page_range(task, mm, start, end)
    else:
        task.kernel.generation += 1
    mmap_write_unlock(task, mm)
    return 0
