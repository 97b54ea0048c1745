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

A read fault on a file mapping first maps what it can around the faulting address without
sleeping (``do_fault_around()`` → ``filemap_map_pages()``, fault_around_bytes = 64 KiB), then
falls back to ``->fault`` and ``finish_fault()``, which in v6.18 maps the whole folio where the
VMA, the page table and EOF allow. Whether the PMD entry already points to a page table matters
to the path (``filemap_map_pages()`` of a non-shmem folio that reaches EOF does not install one
and then maps nothing): ``MM.page_tables`` records the 2 MiB ranges that have one.

Simplifications: read faults only (the write path never stores to user memory); no
copy-on-write, since MAP_PRIVATE pages read the file until written and nothing here writes
them. The mmap lock is one rw_semaphore per mm: a fault takes it for reading for the whole of
its handling (the kernel first tries the per-VMA lock, lock_vma_under_rcu(), which excludes the
same writers). A fault handler that drops the lock for I/O returns VM_FAULT_RETRY and the fault
is redone, as in the kernel, but the model holds the lock across the I/O and across a sleep on
a folio lock;
munmap and mprotect take it for writing, MADV_DONTNEED for reading (madvise_need_mmap_write()).
Page tables are never freed: free_pgtables() frees one only when no VMA is left in its 2 MiB
range, and the oracle keeps guard mappings around every scenario's regions. A PMD mapping of a
PMD-sized folio (do_set_pmd()) is kept as the 512 PTEs it stands for.
A page table entry carries no protection bits: mprotect to PROT_NONE zaps the entries of the
range, so the next access faults and the fault handler refuses it, as a PROT_NONE PTE would.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import DIV_ROUND_UP, OFFSET_MASK, PAGE_SHIFT, PAGE_SIZE
from writepath.kernel.pagecache import Folio, folio_trylock, folio_unlock
from writepath.kernel.task import Sleeps, Task, wait_for_unlock
from writepath.kernel.vfs import (
    VM_FAULT_ERROR,
    VM_FAULT_MAJOR,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
    Inode,
)

ZERO_PAGE: Final = bytes(PAGE_SIZE)

# vm_fault_t bits the fault path passes between its steps (include/linux/mm_types.h).
VM_FAULT_NOPAGE: Final = 0x0100
VM_FAULT_RETRY: Final = 0x0400

#: fault_around_bytes (mm/memory.c) in pages: the default 64 KiB.
FAULT_AROUND_PAGES: Final = 16
#: Entries of one page table (x86-64): one PMD entry covers PTRS_PER_PTE pages, 2 MiB.
PTRS_PER_PTE: Final = 512
PMD_SHIFT: Final = 21

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
    holder = sem.owner
    if holder is not None:
        task.emit((tp.LOCK_WAIT, task.pid, sem.lock_name(), holder.pid))
        yield from wait_for_unlock(sem)
    sem.readers.append(task)


def mmap_read_unlock(task: Task, mm: MM) -> None:
    mm.mmap_lock.readers.remove(task)


def mmap_write_lock(task: Task, mm: MM) -> Sleeps[None]:
    """down_write(&mm->mmap_lock): sleep while a writer or any reader holds it."""
    side = mm.mmap_lock.for_writer
    holder = side.owner
    if holder is not None:
        task.emit((tp.LOCK_WAIT, task.pid, side.lock_name(), holder.pid))
        yield from wait_for_unlock(side)
    mm.mmap_lock.owner = task


def mmap_write_unlock(task: Task, mm: MM) -> None:
    assert mm.mmap_lock.owner is task
    mm.mmap_lock.owner = None


class MM:
    """struct mm_struct: the VMAs (sorted, non-overlapping), the page table and the mmap lock."""

    __slots__ = ("fault_tried", "mmap_lock", "page_tables", "pte", "starts", "vmas")

    def __init__(self) -> None:
        self.vmas: list[VMA] = []
        self.starts: list[int] = []
        self.pte: dict[int, PageRef] = {}
        # The 2 MiB ranges (address >> PMD_SHIFT) whose PMD entry points to a page table.
        self.page_tables: set[int] = set()
        # Tasks whose fault is a retry (FAULT_FLAG_TRIED in the vm_fault on their stack: the
        # model's ->fault takes no vm_fault, so the flag is kept here).
        self.fault_tried: set[int] = set()
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
    mm.page_tables.add(address >> PMD_SHIFT)
    task.kernel.generation += 1


def pmd_none(mm: MM, address: int) -> bool:
    """No page table yet for the 2 MiB range of ``address``. A PTE installed without
    ``set_pte()`` (the scenario setup's touched anonymous pages) implies its page table."""
    pmd = address >> PMD_SHIFT
    if pmd in mm.page_tables:
        return False
    first = pmd << (PMD_SHIFT - PAGE_SHIFT)
    pte = mm.pte
    if len(pte) > PTRS_PER_PTE:
        present = any(vpn in pte for vpn in range(first, first + PTRS_PER_PTE))
    else:
        present = any(vpn >> (PMD_SHIFT - PAGE_SHIFT) == pmd for vpn in pte)
    if present:
        mm.page_tables.add(pmd)
    return not present


def pmd_install(mm: MM, address: int) -> None:
    """Point the PMD entry of ``address`` to a (preallocated) page table."""
    mm.page_tables.add(address >> PMD_SHIFT)


def folio_page_ref(folio: Folio, pgoff: int) -> PageRef:
    return (folio.data, (pgoff - folio.index) << PAGE_SHIFT)


def _vma_address(vma: VMA, pgoff: int) -> int:
    return vma.vm_start + ((pgoff - vma.vm_pgoff) << PAGE_SHIFT)


def _is_shmem(inode: Inode) -> bool:
    """shmem_mapping(): tmpfs keeps its own rules for mapping across EOF."""
    return inode.i_mapping.a_ops.name == "shmem_aops"


def filemap_map_pages(
    task: Task, vma: VMA, address: int, start_pgoff: int, end_pgoff: int, prealloc_pte: bool
) -> int:
    """vm_ops->map_pages of every model filesystem (mm/filemap.c, v6.18): map, without
    sleeping, the pages of [start_pgoff, end_pgoff] that are cached in a folio that is uptodate,
    not locked (trylock), within EOF, whose PTE is still empty. (The kernel also skips a folio
    marked PG_readahead; the model keeps no such mark, see ``writepath.kernel.readahead``.)

    The window's end is clamped to the last page within EOF. Only when it finds a folio does it
    go on, and only if the PMD has a page table: it installs the preallocated one only where it
    may map large, which for a file other than tmpfs needs the first folio to end before the
    last page within EOF (``file_end >= folio_next_index()``). Then it fires
    mm_filemap_map_pages with the window. VM_FAULT_NOPAGE when the faulting page was mapped.
    """
    inode = vma.vm_file
    assert inode is not None
    pages = inode.i_mapping.i_pages
    file_end = DIV_ROUND_UP(inode.i_size, PAGE_SIZE) - 1
    end_pgoff = min(end_pgoff, file_end)
    mm = task.mm
    folios: list[tuple[int, Folio]] = []  # (first index of the window in it, folio)
    index = start_pgoff
    while index <= end_pgoff:
        folio = pages.get(index)
        if folio is None:
            index += 1
            continue
        next_index = folio.index + folio.nr_pages
        # next_uptodate_folio(): skip what cannot be mapped without waiting.
        if folio.uptodate and folio_trylock(task, folio):
            if index < DIV_ROUND_UP(inode.i_size, PAGE_SIZE):
                folios.append((index, folio))
            else:
                folio_unlock(task, folio)
        index = next_index
    if not folios:
        return 0
    first = folios[0][1]
    can_map_large = _is_shmem(inode) or file_end >= first.index + first.nr_pages
    if can_map_large and pmd_none(mm, address):
        # filemap_map_pmd(): a PMD-sized folio is mapped by the PMD itself (no tracepoint);
        # else the preallocated page table is installed.
        if do_set_pmd(task, vma, address, first):
            for _, folio in folios:
                folio_unlock(task, folio)
            return VM_FAULT_NOPAGE
        if prealloc_pte:
            pmd_install(mm, address)
    ret = 0
    if pmd_none(mm, address):
        # pte_offset_map_lock() finds no page table: nothing mapped, no tracepoint.
        for _, folio in folios:
            folio_unlock(task, folio)
        return 0
    fault_vpn = address >> PAGE_SHIFT
    for index, folio in folios:
        last = min(folio.index + folio.nr_pages - 1, end_pgoff)
        for pgoff in range(index, last + 1):
            addr = _vma_address(vma, pgoff)
            if (addr >> PAGE_SHIFT) in mm.pte:
                continue  # pte_none() fails: leave the entry alone
            set_pte(task, mm, addr, folio_page_ref(folio, pgoff))
            if addr >> PAGE_SHIFT == fault_vpn:
                ret = VM_FAULT_NOPAGE
        folio_unlock(task, folio)
    tp.trace_mm_filemap_map_pages(task, inode.name, start_pgoff, end_pgoff)
    return ret


def do_set_pmd(task: Task, vma: VMA, address: int, folio: Folio) -> bool:
    """do_set_pmd() (mm/memory.c, v6.18): map a folio of PMD order with one PMD entry, where
    the VMA covers the whole aligned 2 MiB around ``address`` and its file offset is aligned
    the same way (thp_vma_suitable_order()). The model keeps PTEs only, so it sets the 512
    PTEs the huge entry stands for. False is VM_FAULT_FALLBACK."""
    if folio.order != PMD_SHIFT - PAGE_SHIFT:
        return False
    haddr = address & ~((1 << PMD_SHIFT) - 1)
    if ((vma.vm_start >> PAGE_SHIFT) - vma.vm_pgoff) % PTRS_PER_PTE:
        return False
    if haddr < vma.vm_start or haddr + (1 << PMD_SHIFT) > vma.vm_end:
        return False
    if vma.pgoff(haddr) != folio.index:
        return False
    for k in range(PTRS_PER_PTE):
        set_pte(task, task.mm, haddr + (k << PAGE_SHIFT), folio_page_ref(folio, folio.index + k))
    return True


def do_fault_around(task: Task, vma: VMA, address: int) -> int:
    """do_fault_around() (mm/memory.c, v6.18): the fault_around_bytes window containing the
    faulting page, aligned to its size, clamped to the VMA and to the page table, handed to
    ``->map_pages``. A page table is preallocated if the PMD has none."""
    nr_pages = FAULT_AROUND_PAGES
    pte_off = (address >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)
    pgoff = vma.pgoff(address)
    vma_off = pgoff - vma.vm_pgoff
    from_pte = max(pte_off & ~(nr_pages - 1), pte_off - min(pte_off, vma_off))
    vma_pages = (vma.vm_end - vma.vm_start) >> PAGE_SHIFT
    to_pte = min(from_pte + nr_pages, PTRS_PER_PTE, pte_off + vma_pages - vma_off) - 1
    prealloc_pte = pmd_none(task.mm, address)
    return filemap_map_pages(
        task, vma, address, pgoff + from_pte - pte_off, pgoff + to_pte - pte_off, prealloc_pte
    )


def finish_fault(task: Task, vma: VMA, address: int, folio: Folio, pgoff: int) -> None:
    """finish_fault() (mm/memory.c, v6.18) for a read fault: map the whole folio when it lies
    inside the VMA and the page table and (but for tmpfs) inside EOF, and none of its PTEs is
    set; else only the faulting page, if its PTE is still empty."""
    inode = vma.vm_file
    assert inode is not None
    mm = task.mm
    file_end = DIV_ROUND_UP(inode.i_size, PAGE_SIZE)
    needs_fallback = not _is_shmem(inode) and file_end < folio.index + folio.nr_pages
    if pmd_none(mm, address) and not needs_fallback and do_set_pmd(task, vma, address, folio):
        return
    pmd_install(mm, address)
    nr_pages = folio.nr_pages
    page_addr = address & ~OFFSET_MASK
    if nr_pages > 1 and not needs_fallback:
        idx = pgoff - folio.index
        vma_off = pgoff - vma.vm_pgoff
        pte_off = (address >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)
        vma_pages = (vma.vm_end - vma.vm_start) >> PAGE_SHIFT
        if (
            vma_off >= idx
            and vma_off + nr_pages - idx <= vma_pages
            and pte_off >= idx
            and pte_off + nr_pages - idx <= PTRS_PER_PTE
        ):
            first = page_addr - (idx << PAGE_SHIFT)
            vpn = first >> PAGE_SHIFT
            if not any(vpn + k in mm.pte for k in range(nr_pages)):
                for k in range(nr_pages):
                    set_pte(
                        task, mm, first + (k << PAGE_SHIFT), folio_page_ref(folio, folio.index + k)
                    )
                return
    if (address >> PAGE_SHIFT) not in mm.pte:
        set_pte(task, mm, address, folio_page_ref(folio, pgoff))


def do_read_fault(task: Task, vma: VMA, address: int) -> Sleeps[tuple[int, str]]:
    """A read fault on a file mapping (mm/memory.c, v6.18).

    First fault-around (``do_fault_around()``), which never sleeps. If it did not map the
    faulting page, ``vma->vm_ops->fault`` looks the folio up or reads it, taking its lock and
    sleeping for it if need be: this is where a fault on a folio the faulting task itself holds
    locked never returns. It may also ask for the fault to be retried (VM_FAULT_RETRY, after it
    dropped the mmap lock for I/O).
    """
    inode = vma.vm_file
    assert inode is not None
    # mm_account_fault() (mm/memory.c) counts a fault major when ->fault says so or when it is
    # the retry of one that dropped the lock for I/O (FAULT_FLAG_TRIED), however it ends.
    tried = task.pid in task.mm.fault_tried
    if do_fault_around(task, vma, address):
        return 0, tp.FAULT_MAJOR if tried else tp.FAULT_MINOR
    pgoff = vma.pgoff(address)
    ret, folio = yield from inode.fs.fault(task, vma, pgoff)
    # A fault that dropped the mmap lock for I/O is not accounted (handle_mm_fault() records no
    # outcome for VM_FAULT_RETRY); its retry is, as major.
    if ret & (VM_FAULT_ERROR | VM_FAULT_RETRY) or folio is None:
        return ret, tp.FAULT_SIGBUS
    finish_fault(task, vma, address, folio, pgoff)
    folio_unlock(task, folio)
    # ->fault answers VM_FAULT_MAJOR in filemap_fault() when the page was not cached at all;
    # shmem_fault() never does here (no swap in the model).
    major = ret & VM_FAULT_MAJOR or tried
    return 0, tp.FAULT_MAJOR if major else tp.FAULT_MINOR


def handle_mm_fault(task: Task, vma: VMA, address: int) -> Sleeps[int]:
    """Resolve a read fault at ``address`` in ``vma``; returns a vm_fault_t (0 on success)."""
    if vma.vm_file is None:
        # do_anonymous_page(): a read of untouched anonymous memory maps the zero page.
        set_pte(task, task.mm, address, (ZERO_PAGE, 0))
        task.emit((tp.PAGE_FAULT, task.pid, address, tp.FAULT_ZERO_PAGE))
        return 0
    ret, outcome = yield from do_read_fault(task, vma, address)
    if not ret & VM_FAULT_RETRY:
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
    if ret & VM_FAULT_RETRY:
        # The fault dropped the mmap lock for I/O (the model keeps holding it, see above) and
        # asks to be redone: lock_mmap_retry in fault.c, once, with FAULT_FLAG_TRIED, which
        # makes ->fault not drop the lock again.
        mm.fault_tried.add(task.pid)
        try:
            return (yield from do_user_addr_fault(task, address))
        finally:
            mm.fault_tried.discard(task.pid)
    return not ret & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)
