"""Counters: a view of the event log (``writepath.kernel.tracepoints``)."""

from __future__ import annotations

from collections.abc import Iterable

from writepath.kernel import tracepoints as tp
from writepath.kernel.tracepoints import Event

COUNTER_NAMES = (
    "syscalls",
    "user_access_windows",
    "fault_in_calls",
    "page_faults_handled",
    "page_faults_failed",
    "page_faults_refused",
    "atomic_copies_full",
    "atomic_copies_short",
    "atomic_copies_zero",
    "write_begin_calls",
    "write_end_calls",
    "retries",
    "folio_lock_acquisitions",
    "lock_waits",
)

_SYSCALLS = frozenset({"ksys_write", "ksys_pwrite64", "do_writev", "do_pwritev", "ksys_lseek"})


def count(events: Iterable[Event], into: dict[str, int] | None = None) -> dict[str, int]:
    """Derive every counter from the events, in one pass.

    With ``into``, add to those counters and return them: a log consumed in parts (see
    ``sched.run_alone``'s ``drain``) gives the same counters as the whole log at once.
    """
    c = dict.fromkeys(COUNTER_NAMES, 0) if into is None else into
    for kind, _pid, a, b in events:
        if kind == tp.STAC:
            c["user_access_windows"] += 1
        elif kind == tp.ENTER:
            if a in _SYSCALLS:
                c["syscalls"] += 1
            elif a == "fault_in_iov_iter_readable":
                c["fault_in_calls"] += 1
            elif isinstance(a, str) and a.endswith("write_begin"):
                c["write_begin_calls"] += 1
            elif isinstance(a, str) and a.endswith("write_end"):
                c["write_end_calls"] += 1
        elif kind == tp.COPY:
            assert isinstance(a, int) and isinstance(b, int)
            if b == a:
                c["atomic_copies_full"] += 1
            elif b == 0:
                c["atomic_copies_zero"] += 1
            else:
                c["atomic_copies_short"] += 1
        elif kind == tp.PAGE_FAULT:
            if b in tp.FAULT_HANDLED:
                c["page_faults_handled"] += 1
            elif b == tp.FAULT_REFUSED:
                c["page_faults_refused"] += 1
            else:
                c["page_faults_failed"] += 1
        elif kind == tp.FOLIO_LOCK:
            c["folio_lock_acquisitions"] += 1
        elif kind == tp.RETRY:
            c["retries"] += 1
        elif kind == tp.LOCK_WAIT:
            c["lock_waits"] += 1
    return c
