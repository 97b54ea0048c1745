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
=================  =====================================  ===================================

Counters and the ftrace-style trace are views of this log (``writepath.counters``,
``writepath.trace``); events carry the sizes and addresses a later cost model needs to price them.
"""

from __future__ import annotations

from typing import Final

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

# Outcomes of a page fault (the ``b`` field of a ``page_fault`` event).
FAULT_MINOR: Final = "minor"  # the page was in the page cache: only a PTE was installed
FAULT_MAJOR: Final = "major"  # the page was read (or allocated) into the page cache
FAULT_ZERO_PAGE: Final = "zero_page"  # untouched anonymous memory: the shared zero page
FAULT_SIGSEGV: Final = "sigsegv"  # no VMA, or the VMA forbids reading
FAULT_SIGBUS: Final = "sigbus"  # a file page wholly beyond EOF
FAULT_REFUSED: Final = "refused"  # pagefault_disable(): the exception table fixes the copy up
FAULT_HANDLED = frozenset({FAULT_MINOR, FAULT_MAJOR, FAULT_ZERO_PAGE})
FAULT_FAILED = frozenset({FAULT_SIGSEGV, FAULT_SIGBUS})
