"""The model's trace buffer: every step emits an event, like a kernel tracepoint.

An event is a plain 4-tuple ``(kind, pid, a, b)`` so that emitting one on the hot path is a
single ``list.append``. The meaning of ``a`` and ``b`` depends on ``kind``:

=================  =====================================  ===================================
kind               a                                      b
=================  =====================================  ===================================
``enter``          function name                          first argument worth showing
``exit``           function name                          return value
``stac``           user address of the window             size of the window
``clac``           None                                   None
``page_fault``     faulting user address                  outcome (see ``FAULT_*``)
``copy``           bytes asked of an atomic copy          bytes copied
``folio_lock``     folio index                            inode number
``folio_unlock``   folio index                            inode number
``lock_wait``      name of the lock waited for            pid of its holder
``retry``          file position of the retried chunk     bytes of the retried chunk
``deadlock``       description of the wait-for cycle      None
``livelock``       description of the spin                retries without progress
``tracepoint``     name of a kernel tracepoint            its fields, a tuple (see below)
=================  =====================================  ===================================

A ``tracepoint`` event is one of the kernel's own tracepoints, fired by the model at the place
the kernel fires it (``trace_*`` below). Its fields are what the kernel records, in the order of
the README's "Tracepoints" contract; a file is named by its inode's name, an address is the raw
user address. ``page_fault_kernel`` records the fault's instruction pointer as the name of the
modelled function the faulting access is made in (the kernel's ``%ps`` of ``regs->ip``).

Counters and the ftrace-style trace are views of this log (``writepath.counters``,
``writepath.trace``); events carry the sizes and addresses a later cost model needs to price them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from writepath.kernel.task import Task

Event = tuple[str, int, object, object]

ENTER: Final = "enter"
EXIT: Final = "exit"
STAC: Final = "stac"
CLAC: Final = "clac"
PAGE_FAULT: Final = "page_fault"
COPY: Final = "copy"
FOLIO_LOCK: Final = "folio_lock"
FOLIO_UNLOCK: Final = "folio_unlock"
LOCK_WAIT: Final = "lock_wait"
RETRY: Final = "retry"
DEADLOCK: Final = "deadlock"
LIVELOCK: Final = "livelock"
TRACEPOINT: Final = "tracepoint"

# Outcomes of a page fault (the ``b`` field of a ``page_fault`` event).
FAULT_MINOR: Final = "minor"  # the page was in the page cache: only a PTE was installed
FAULT_MAJOR: Final = "major"  # the page was read (or allocated) into the page cache
FAULT_ZERO_PAGE: Final = "zero_page"  # untouched anonymous memory: the shared zero page
FAULT_SIGSEGV: Final = "sigsegv"  # no VMA, or the VMA forbids reading
FAULT_SIGBUS: Final = "sigbus"  # a file page wholly beyond EOF
FAULT_REFUSED: Final = "refused"  # pagefault_disable(): the exception table fixes the copy up
FAULT_HANDLED: Final = frozenset({FAULT_MINOR, FAULT_MAJOR, FAULT_ZERO_PAGE})
FAULT_FAILED: Final = frozenset({FAULT_SIGSEGV, FAULT_SIGBUS})


def trace_page_fault_kernel(task: Task, address: int, ip: str, error_code: int = 0) -> None:
    """exceptions:page_fault_kernel (arch/x86/mm/fault.c, trace_page_fault_entries()): every
    kernel-mode page fault, fired on entry, before the handler decides to resolve or refuse it.
    The write path only reads user memory, so the error code of its faults is 0 (a read of a
    page that is not present: PROT_NONE pages are not present on x86 either)."""
    task.emit((TRACEPOINT, task.pid, "page_fault_kernel", (address, ip, error_code)))


def trace_mm_filemap_add_to_page_cache(task: Task, file: str, index: int, order: int) -> None:
    """filemap:mm_filemap_add_to_page_cache, fired by __filemap_add_folio() (mm/filemap.c)."""
    task.emit((TRACEPOINT, task.pid, "mm_filemap_add_to_page_cache", (file, index, order)))


def trace_mm_filemap_delete_from_page_cache(task: Task, file: str, index: int, order: int) -> None:
    """filemap:mm_filemap_delete_from_page_cache, fired by __filemap_remove_folio()."""
    task.emit((TRACEPOINT, task.pid, "mm_filemap_delete_from_page_cache", (file, index, order)))


def trace_mm_filemap_fault(task: Task, file: str, index: int) -> None:
    """filemap:mm_filemap_fault, fired by filemap_fault() once the index is known within EOF."""
    task.emit((TRACEPOINT, task.pid, "mm_filemap_fault", (file, index)))


def trace_mm_filemap_map_pages(task: Task, file: str, start: int, end: int) -> None:
    """filemap:mm_filemap_map_pages, fired by filemap_map_pages() after it mapped what it could
    of [start, end] (end inclusive, clamped to the last page within EOF)."""
    task.emit((TRACEPOINT, task.pid, "mm_filemap_map_pages", (file, start, end)))


def trace_ext4_write_begin(task: Task, name: str, file: str, pos: int, length: int) -> None:
    """ext4:ext4_da_write_begin / ext4:ext4_write_begin (fs/ext4/inode.c), fired on entry."""
    task.emit((TRACEPOINT, task.pid, name, (file, pos, length)))


def trace_ext4_write_end(
    task: Task, name: str, file: str, pos: int, length: int, copied: int
) -> None:
    """ext4:ext4_da_write_end and its siblings, fired on entry with the copy's ``copied``."""
    task.emit((TRACEPOINT, task.pid, name, (file, pos, length, copied)))


def trace_iomap_iter(
    task: Task, file: str, pos: int, length: int, status: int, flags: tuple[str, ...]
) -> None:
    """iomap:iomap_iter (fs/iomap/iter.c), fired on entry to every iomap_iter() call with the
    iterator's position, iomap_length() of the current mapping, its status and flag names."""
    task.emit((TRACEPOINT, task.pid, "iomap_iter", (file, pos, length, status, flags)))
