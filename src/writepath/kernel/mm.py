"""A user address space: VMAs, a page table, and the page-fault handler.

Follows mm/mmap.c and mm/memory.c (``handle_mm_fault``, ``do_anonymous_page``,
``do_read_fault``, ``finish_fault``) and arch/x86/mm/fault.c (``do_user_addr_fault``) of
v6.14–v6.18.

The page table maps a virtual page number to ``(buffer, offset)``: the bytes a user access at
that page reads. An anonymous page owns its buffer; a file page is a window into its folio's
``data``, so a mapping of the file being written aliases the folio the write copies into, exactly
as in the kernel (and, being a ``FolioData``, carries the folio's record of uninitialized bytes
into any copy from it). Anonymous pages and the shared zero page read as zeros: they are never
uninitialized. Untouched anonymous memory reads the shared zero page.

Simplifications: read faults only (the write path never stores to user memory); no fault-around
beyond the faulting page; no mmap_lock (the model's faults cannot race with munmap inside one
task, and a later multi-task explorer interleaves at the named scheduling points instead); no
copy-on-write, since MAP_PRIVATE pages read the file until written and nothing here writes them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import DIV_ROUND_UP, OFFSET_MASK, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import Folio, folio_unlock
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.vfs import (
    VM_FAULT_ERROR,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
    Inode,
)

ZERO_PAGE = bytes(PAGE_SIZE)

PageRef = tuple["bytearray | bytes", int]


@dataclass(slots=True)
class VMA:
    """struct vm_area_struct: [vm_start, vm_end) with its protection and what it maps."""

    vm_start: int
    vm_end: int
    readable: bool
    writable: bool
    shared: bool
    vm_file: Inode | None = None
    vm_pgoff: int = 0
    name: str = ""

    def pgoff(self, address: int) -> int:
        return ((address - self.vm_start) >> PAGE_SHIFT) + self.vm_pgoff


class MM:
    """struct mm_struct: the VMAs (sorted, non-overlapping) and the page table."""

    __slots__ = ("pte", "starts", "vmas")

    def __init__(self) -> None:
        self.vmas: list[VMA] = []
        self.starts: list[int] = []
        self.pte: dict[int, PageRef] = {}

    def find_vma(self, address: int) -> VMA | None:
        """The VMA containing ``address``, or None (a hole)."""
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0:
            vma = self.vmas[i]
            if address < vma.vm_end:
                return vma
        return None


def mmap_region(task: Task, mm: MM, vma: VMA) -> None:
    """Insert a VMA (mm/mmap.c); the caller chose a free, page-aligned range."""
    if vma.vm_start & OFFSET_MASK or vma.vm_end & OFFSET_MASK or vma.vm_end <= vma.vm_start:
        raise ValueError(f"unaligned or empty VMA {vma}")
    i = bisect.bisect_right(mm.starts, vma.vm_start)
    if (i > 0 and mm.vmas[i - 1].vm_end > vma.vm_start) or (
        i < len(mm.vmas) and mm.vmas[i].vm_start < vma.vm_end
    ):
        raise ValueError(f"VMA {vma} overlaps another")
    mm.vmas.insert(i, vma)
    mm.starts.insert(i, vma.vm_start)
    if vma.vm_file is not None and vma.shared and vma.writable:
        vma.vm_file.i_mapping.i_mmap_writable += 1
    task.kernel.generation += 1


def zap_page_range(task: Task, mm: MM, start: int, end: int) -> None:
    """Remove the PTEs of [start, end): MADV_DONTNEED and munmap both end here."""
    for vpn in range(start >> PAGE_SHIFT, DIV_ROUND_UP(end, PAGE_SIZE)):
        mm.pte.pop(vpn, None)
    task.kernel.generation += 1


def madvise_dontneed(task: Task, mm: MM, start: int, length: int) -> int:
    """MADV_DONTNEED: the next access faults again (anonymous memory reads zeros)."""
    zap_page_range(task, mm, start, start + length)
    return 0


def do_munmap(task: Task, mm: MM, start: int, length: int) -> int:
    """munmap of whole VMAs (splitting a VMA is not modelled)."""
    end = start + length
    zap_page_range(task, mm, start, end)
    keep = [v for v in mm.vmas if v.vm_end <= start or v.vm_start >= end]
    mm.vmas = keep
    mm.starts = [v.vm_start for v in keep]
    return 0


def set_pte(task: Task, mm: MM, address: int, ref: PageRef) -> None:
    mm.pte[address >> PAGE_SHIFT] = ref
    task.kernel.generation += 1


def folio_page_ref(folio: Folio, pgoff: int) -> PageRef:
    return (folio.data, (pgoff - folio.index) << PAGE_SHIFT)


def do_read_fault(task: Task, vma: VMA, address: int) -> Sleeps[tuple[int, str]]:
    """A read fault on a file mapping (mm/memory.c).

    First the fault-around path, ``filemap_map_pages()``: a folio that is cached, uptodate,
    within EOF and *not locked* is mapped without sleeping (it only trylocks). Otherwise
    ``vma->vm_ops->fault`` looks the folio up or reads it, taking its lock and sleeping for it if
    need be: this is where a fault on a folio the faulting task itself holds locked never returns.
    """
    inode = vma.vm_file
    assert inode is not None
    pgoff = vma.pgoff(address)
    folio = inode.i_mapping.i_pages.get(pgoff)
    if (
        folio is not None
        and folio.uptodate
        and folio.owner is None
        and pgoff < DIV_ROUND_UP(inode.i_size, PAGE_SIZE)
    ):
        set_pte(task, task.mm, address, folio_page_ref(folio, pgoff))
        return 0, tp.FAULT_MINOR
    cached = folio is not None
    ret, folio = yield from inode.fs.fault(task, vma, pgoff)
    if ret & VM_FAULT_ERROR or folio is None:
        return ret, tp.FAULT_SIGBUS
    # finish_fault(): install the PTE, then drop the lock the fault handler returned.
    set_pte(task, task.mm, address, folio_page_ref(folio, pgoff))
    folio_unlock(task, folio)
    return 0, tp.FAULT_MINOR if cached else tp.FAULT_MAJOR


def handle_mm_fault(task: Task, vma: VMA, address: int) -> Sleeps[int]:
    """Resolve a read fault at ``address`` in ``vma``; returns a vm_fault_t (0 on success)."""
    if vma.vm_file is None:
        # do_anonymous_page(): a read of untouched anonymous memory maps the zero page.
        set_pte(task, task.mm, address, (ZERO_PAGE, 0))
        task.emit((tp.PAGE_FAULT, task.pid, address, tp.FAULT_ZERO_PAGE))
        return 0
    ret, outcome = yield from do_read_fault(task, vma, address)
    task.emit((tp.PAGE_FAULT, task.pid, address, outcome))
    return ret


def do_user_addr_fault(task: Task, address: int) -> Sleeps[bool]:
    """The x86 page-fault handler for a user address touched by the kernel (fault.c).

    Returns True when the fault was resolved and the access can be retried; False when the
    access must fail (the exception table turns it into a short copy or -EFAULT). With page
    faults disabled (``faulthandler_disabled()``) the handler refuses at once, without sleeping.
    """
    if task.pagefault_disabled:
        task.emit((tp.PAGE_FAULT, task.pid, address, tp.FAULT_REFUSED))
        return False
    vma = task.mm.find_vma(address)
    if vma is None or not vma.readable:
        task.emit((tp.PAGE_FAULT, task.pid, address, tp.FAULT_SIGSEGV))
        return False
    ret = yield from handle_mm_fault(task, vma, address)
    return not ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)
