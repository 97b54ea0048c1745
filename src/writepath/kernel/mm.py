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
beyond the faulting page; no copy-on-write, since MAP_PRIVATE pages read the file until written
and nothing here writes them. The mmap lock is one rw_semaphore per mm: a fault takes it for
reading for the whole of its handling (the kernel first tries the per-VMA lock,
lock_vma_under_rcu(), which excludes the same writers, and a fault that must sleep may drop the
lock and retry with FAULT_FLAG_RETRY_NOWAIT: not modelled, the lock is held across the sleep);
munmap and mprotect take it for writing, MADV_DONTNEED for reading (madvise_need_mmap_write()).
A page table entry carries no protection bits: mprotect to PROT_NONE zaps the entries of the
range, so the next access faults and the fault handler refuses it, as a PROT_NONE PTE would.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import DIV_ROUND_UP, OFFSET_MASK, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import Folio, folio_unlock
from writepath.kernel.task import Sleeps, Task, WaitOn
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


class MmapLock:
    """mm->mmap_lock, a rw_semaphore (kernel/locking/rwsem.c): any number of readers or one
    writer. ``owner`` is the writer: what a reader waits for. ``for_writer`` is what a writer
    waits for: the writer or, if none, a reader (the scheduler needs one holder to name).

    Simplification: no writer preference. A reader is admitted while a writer waits (the kernel
    queues it behind the writer); the scheduler's choice of who runs first covers both orders.
    """

    __slots__ = ("for_writer", "owner", "readers")

    def __init__(self) -> None:
        self.owner: Task | None = None
        self.readers: list[Task] = []
        self.for_writer = _MmapLockWriteSide(self)

    def lock_name(self) -> str:
        return "mmap_lock"


class _MmapLockWriteSide:
    """The mmap lock as a writer sees it: held while a writer or any reader holds it."""

    __slots__ = ("sem",)

    def __init__(self, sem: MmapLock) -> None:
        self.sem = sem

    @property
    def owner(self) -> Task | None:
        if self.sem.owner is not None:
            return self.sem.owner
        return self.sem.readers[0] if self.sem.readers else None

    @owner.setter
    def owner(self, task: Task | None) -> None:
        raise AttributeError("the write side of the mmap lock is taken with mmap_write_lock()")

    def lock_name(self) -> str:
        return "mmap_lock"


def mmap_read_lock(task: Task, mm: MM) -> Sleeps[None]:
    """down_read(&mm->mmap_lock): sleep while a writer holds it."""
    sem = mm.mmap_lock
    if sem.owner is not None:
        task.emit((tp.LOCK_WAIT, task.pid, sem.lock_name(), sem.owner.pid))
        while sem.owner is not None:
            yield WaitOn(sem)
    sem.readers.append(task)


def mmap_read_unlock(task: Task, mm: MM) -> None:
    mm.mmap_lock.readers.remove(task)


def mmap_write_lock(task: Task, mm: MM) -> Sleeps[None]:
    """down_write(&mm->mmap_lock): sleep while a writer or any reader holds it."""
    side = mm.mmap_lock.for_writer
    holder = side.owner
    if holder is not None:
        task.emit((tp.LOCK_WAIT, task.pid, side.lock_name(), holder.pid))
        while side.owner is not None:
            yield WaitOn(side)
    mm.mmap_lock.owner = task


def mmap_write_unlock(task: Task, mm: MM) -> None:
    assert mm.mmap_lock.owner is task
    mm.mmap_lock.owner = None


class MM:
    """struct mm_struct: the VMAs (sorted, non-overlapping), the page table and the mmap lock."""

    __slots__ = ("mmap_lock", "pte", "starts", "vmas")

    def __init__(self) -> None:
        self.vmas: list[VMA] = []
        self.starts: list[int] = []
        self.pte: dict[int, PageRef] = {}
        self.mmap_lock = MmapLock()

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


def split_vma(mm: MM, address: int) -> None:
    """Split the VMA containing ``address`` (page-aligned) in two there, if it straddles it
    (mm/vma.c __split_vma(); the file offset of the upper part follows its start)."""
    vma = mm.find_vma(address)
    if vma is None or vma.vm_start == address:
        return
    upper = VMA(
        address,
        vma.vm_end,
        vma.readable,
        vma.writable,
        vma.shared,
        vma.vm_file,
        vma.pgoff(address),
        vma.name,
    )
    vma.vm_end = address
    i = mm.vmas.index(vma) + 1
    mm.vmas.insert(i, upper)
    mm.starts.insert(i, address)


def do_munmap(task: Task, mm: MM, start: int, length: int) -> int:
    """munmap of [start, start + length): VMAs split at the ends, then removed and zapped
    (mm/vma.c do_vmi_munmap(); the caller holds the mmap lock for writing)."""
    end = start + length
    split_vma(mm, start)
    split_vma(mm, end)
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
    mm = task.mm
    if mm.mmap_lock.owner is None:
        mm.mmap_lock.readers.append(task)  # the uncontended down_read(): no generator
    else:
        yield from mmap_read_lock(task, mm)
    vma = mm.find_vma(address)
    if vma is None or not vma.readable:
        mmap_read_unlock(task, mm)
        task.emit((tp.PAGE_FAULT, task.pid, address, tp.FAULT_SIGSEGV))
        return False
    ret = yield from handle_mm_fault(task, vma, address)
    mmap_read_unlock(task, mm)
    return not ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)
