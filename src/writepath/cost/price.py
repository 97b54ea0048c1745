"""From an event log to cost quantities, and from quantities to cycles under a profile.

``tally`` reads the log once (``writepath.kernel.tracepoints``) and counts, per cost category of
``profile.COST_UNITS``, how many times the run paid it (bytes for ``copy_byte``, pages for
``fault_in_touch``). Most categories are the model's own events, named as in the kernel:

- ``i_rwsem``: one per ``inode_lock`` (the down_write/up_write pair; ``inode_unlock`` closes it
  and is not counted again).
- ``file_update_time``: one per ``file_update_time`` (also what ``file_modified`` emits).
- ``folio_mark_dirty``: one per ``folio_mark_dirty``; ``balance_dirty_pages_ratelimited``: one
  per ``balance_dirty_pages_ratelimited`` or ``balance_dirty_pages_ratelimited_flags``, the
  outermost only (the first calls the second in the kernel).
- ``page_cache_lookup``: one per outermost ``__filemap_get_folio`` inside a ``*_write_begin``.
  Lookups made by a page fault (``filemap_fault``) belong to the fault's own cost.
- ``write_begin``, ``write_end``, ``fault_in_call``: their functions' ENTER; ``syscall`` the
  ENTER of a write or lseek system call; ``copy_call``/``copy_byte``/``failed_copy`` the copy
  event; faults by outcome; ``folio_lock``/``folio_unlock``; ``retry``; ``uaccess_window`` every
  STAC (priced only where the profile has SMAP).

Where the model emits no event of its own, the count is derived, and each derivation is an
assumption:

- ``write_iter``: once per entry into the write loop (``generic_perform_write``, or
  ``iomap_write_iter``): the VFS checks (fdget, rw_verify_area, generic_write_checks, fsnotify)
  come once per call that reaches the loop; a call refused before it pays none.
- ``llseek``: the body of ``ksys_lseek`` beyond the syscall entry/exit.
- ``fault_in_touch``: the pages ``fault_in_readable`` touched, from its window's address and
  size and the bytes it reports not faulted in (one more page when it stopped at a failure).

``within`` keeps a second tally of the events between ENTER and EXIT of
``fault_in_iov_iter_readable``, to compare with a measured cycle share of that function.

A run of several tasks (``tally_tasks``) is tallied task by task (the events of one pid in
order, so that nesting is never mixed across tasks) and summed. Its third tally, ``critical``,
holds what each task paid from the ENTER of ``inode_lock`` to the EXIT of ``inode_unlock``: the
section that i_rwsem lets one task run at a time (the i_rwsem unit itself, the acquire and
release, is inside it). ``lock_waits`` counts the ``lock_wait`` events on an i_rwsem: how often a
task found the inode locked by another. A wait is counted, not priced: the profiles hold no cost
for the contended rwsem's slow path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from writepath.cost.profile import COST_UNITS, Profile
from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import PAGE_SHIFT
from writepath.kernel.tracepoints import Event

SYSCALLS = frozenset({"ksys_write", "ksys_pwrite64", "do_writev", "do_pwritev", "ksys_lseek"})
WRITE_LOOPS = frozenset({"generic_perform_write", "iomap_write_iter"})
FAULT_IN = "fault_in_iov_iter_readable"
#: The JSON key of the i_rwsem critical section's tally.
CRITICAL = "i_rwsem_critical_section"
BALANCE_DIRTY = frozenset(
    {"balance_dirty_pages_ratelimited", "balance_dirty_pages_ratelimited_flags"}
)

_FAULT_COST = {
    tp.FAULT_MINOR: "fault_minor",
    tp.FAULT_MAJOR: "fault_major",
    tp.FAULT_ZERO_PAGE: "fault_zero_page",
    tp.FAULT_REFUSED: "fault_refused",
    tp.FAULT_SIGSEGV: "fault_failed",
    tp.FAULT_SIGBUS: "fault_failed",
}


@dataclass
class Tally:
    """Quantities per cost category: of the whole run, and of the fault-in function alone."""

    total: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COST_UNITS, 0.0))
    fault_in: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COST_UNITS, 0.0))
    #: What the tasks paid while holding an i_rwsem (``tally_tasks`` only; zeros otherwise).
    critical: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COST_UNITS, 0.0))
    #: lock_wait events on an i_rwsem (``tally_tasks`` only).
    lock_waits: float = 0.0

    def scaled(self, factor: float) -> Tally:
        return Tally(
            {k: v * factor for k, v in self.total.items()},
            {k: v * factor for k, v in self.fault_in.items()},
            {k: v * factor for k, v in self.critical.items()},
            self.lock_waits * factor,
        )

    def add(self, other: Tally) -> None:
        for mine, theirs in (
            (self.total, other.total),
            (self.fault_in, other.fault_in),
            (self.critical, other.critical),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + v
        self.lock_waits += other.lock_waits

    def to_json(self) -> dict[str, Any]:
        return {
            "total": dict(self.total),
            FAULT_IN: dict(self.fault_in),
            CRITICAL: dict(self.critical),
            "lock_waits": self.lock_waits,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Tally:
        t = cls(dict(doc["total"]), dict(doc[FAULT_IN]))
        if CRITICAL in doc:
            t.critical = dict(doc[CRITICAL])
        t.lock_waits = float(doc.get("lock_waits", 0.0))
        return t


def _pages(addr: int, length: int) -> int:
    if length <= 0:
        return 0
    return ((addr + length - 1) >> PAGE_SHIFT) - (addr >> PAGE_SHIFT) + 1


def tally(events: Iterable[Event]) -> Tally:
    """Count what a run paid for, in one pass over its events (see the module docstring)."""
    t = Tally()
    total, inner = t.total, t.fault_in
    depth = 0  # nesting of fault_in_iov_iter_readable
    window: tuple[int, int] | None = None  # the open fault_in_readable window
    in_fault_in_readable = False
    write_begin_depth = 0  # inside a *_write_begin: its __filemap_get_folio is the lookup
    lookup_depth = 0  # nesting of __filemap_get_folio (it retries itself on -EEXIST)
    balance_depth = 0  # balance_dirty_pages_ratelimited calls the _flags variant

    def add(key: str, n: float = 1.0) -> None:
        total[key] += n
        if depth:
            inner[key] += n

    for kind, _pid, a, b in events:
        if kind == tp.ENTER:
            if a in SYSCALLS:
                add("syscall")
                if a == "ksys_lseek":
                    add("llseek")
            elif a in WRITE_LOOPS:
                add("write_iter")
            elif a == "inode_lock":
                add("i_rwsem")
            elif a == "file_update_time":
                add("file_update_time")
            elif a == "folio_mark_dirty":
                add("folio_mark_dirty")
            elif a in BALANCE_DIRTY:
                if not balance_depth:
                    add("balance_dirty_pages_ratelimited")
                balance_depth += 1
            elif a == "__filemap_get_folio":
                if write_begin_depth and not lookup_depth:
                    add("page_cache_lookup")
                lookup_depth += 1
            elif a == FAULT_IN:
                depth += 1
                add("fault_in_call")
            elif a == "fault_in_readable":
                in_fault_in_readable = True
                window = None
            elif isinstance(a, str) and a.endswith("write_begin"):
                write_begin_depth += 1
                add("write_begin")
            elif isinstance(a, str) and a.endswith("write_end"):
                add("write_end")
        elif kind == tp.EXIT:
            if a == FAULT_IN:
                depth -= 1
            elif a in BALANCE_DIRTY:
                balance_depth = max(0, balance_depth - 1)
            elif a == "__filemap_get_folio":
                lookup_depth = max(0, lookup_depth - 1)
            elif a == "fault_in_readable":
                in_fault_in_readable = False
                if window is not None and isinstance(b, int):
                    addr, size = window
                    done = size - b
                    add("fault_in_touch", _pages(addr, done) + (1 if b else 0))
                window = None
            elif isinstance(a, str) and a.endswith("write_begin"):
                write_begin_depth = max(0, write_begin_depth - 1)
        elif kind == tp.STAC:
            add("uaccess_window")
            if in_fault_in_readable and isinstance(a, int) and isinstance(b, int):
                window = (a, b)
        elif kind == tp.COPY:
            assert isinstance(a, int) and isinstance(b, int)
            add("copy_call")
            add("copy_byte", b)
            if b < a:
                add("failed_copy")
        elif kind == tp.PAGE_FAULT:
            add(_FAULT_COST[str(b)])
        elif kind == tp.FOLIO_LOCK:
            add("folio_lock")
        elif kind == tp.FOLIO_UNLOCK:
            add("folio_unlock")
        elif kind == tp.RETRY:
            add("retry")
    return t


def _critical_sections(events: Iterable[Event]) -> list[Event]:
    """One task's events from each ENTER of ``inode_lock`` to the EXIT of ``inode_unlock``."""
    inside: list[Event] = []
    held = False
    for e in events:
        kind, _pid, a, _b = e
        if kind == tp.ENTER and a == "inode_lock":
            held = True
        if held:
            inside.append(e)
        if kind == tp.EXIT and a == "inode_unlock":
            held = False
    return inside


def _is_i_rwsem_wait(event: Event) -> bool:
    return event[0] == tp.LOCK_WAIT and isinstance(event[2], str) and event[2].startswith("i_rwsem")


def tally_tasks(events: Iterable[Event]) -> Tally:
    """``tally`` of every task's own events, summed, with each task's i_rwsem critical sections
    tallied apart and the i_rwsem waits counted (see the module docstring)."""
    by_pid: dict[int, list[Event]] = {}
    for e in events:
        by_pid.setdefault(e[1], []).append(e)
    out = Tally()
    for mine in by_pid.values():
        t = tally(mine)
        t.critical = tally(_critical_sections(mine)).total
        t.lock_waits = float(sum(1 for e in mine if _is_i_rwsem_wait(e)))
        out.add(t)
    return out


def unit_cost(profile: Profile, name: str) -> float:
    """The cycles one unit of ``name`` costs on ``profile``; a window is free without SMAP."""
    if name == "uaccess_window" and not profile.smap:
        return 0.0
    return profile.cost(name)


def price(quantities: Mapping[str, float], profile: Profile) -> dict[str, float]:
    """Cycles per cost category."""
    return {k: q * unit_cost(profile, k) for k, q in quantities.items() if q}


def cycles(quantities: Mapping[str, float], profile: Profile) -> float:
    return sum(price(quantities, profile).values())
