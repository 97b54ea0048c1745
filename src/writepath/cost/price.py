"""From an event log to cost quantities, and from quantities to cycles under a profile.

``tally`` reads the log once (``writepath.kernel.tracepoints``) and counts, per cost category of
``profile.COST_UNITS``, how many times the run paid it (bytes for ``copy_byte``, pages for
``fault_in_touch``). Where the model emits no event of its own for a cost, the count is derived
from the events it does emit; each derivation is an assumption, listed here:

- ``i_rwsem``, ``file_update_time``, ``write_iter``: once per entry into the write loop
  (``generic_perform_write``, or ``iomap_write_iter`` for iomap): the lock pair, the timestamp
  update and the VFS checks come once per call that reaches the loop. A call refused before the
  loop (EBADF, EINVAL, access_ok) pays none of them; a zero-length write pays none (it takes the
  lock in the kernel: a few cycles missed).
- ``page_cache_lookup``: once per ``*_write_begin`` (its ``__filemap_get_folio``). Lookups made
  by page faults are inside the fault's own cost.
- ``dirty_accounting``: once per ``*_write_end`` that accepted bytes (``folio_mark_dirty`` and
  the loop's ``balance_dirty_pages_ratelimited``).
- ``fault_in_touch``: the pages ``fault_in_readable`` touched, from its window's address and
  size and the bytes it reports not faulted in (one more page when it stopped at a failure).
- ``llseek``: the body of ``ksys_lseek`` beyond the syscall entry/exit.
- ``uaccess_window``: every STAC; priced only where the profile has SMAP.

``within`` keeps a second tally of the events between ENTER and EXIT of
``fault_in_iov_iter_readable``, to compare with a measured cycle share of that function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from writepath.cost.profile import COST_UNITS, Profile
from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import PAGE_SHIFT
from writepath.kernel.tracepoints import Event

SYSCALLS = frozenset({"ksys_write", "ksys_pwrite64", "do_writev", "do_pwritev", "ksys_lseek"})
WRITE_LOOPS = frozenset({"generic_perform_write", "iomap_write_iter"})
FAULT_IN = "fault_in_iov_iter_readable"

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

    def scaled(self, factor: float) -> Tally:
        return Tally(
            {k: v * factor for k, v in self.total.items()},
            {k: v * factor for k, v in self.fault_in.items()},
        )

    def to_json(self) -> dict[str, dict[str, float]]:
        return {"total": dict(self.total), FAULT_IN: dict(self.fault_in)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Mapping[str, float]]) -> Tally:
        return cls(dict(doc["total"]), dict(doc[FAULT_IN]))


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
                add("i_rwsem")
                add("file_update_time")
            elif a == FAULT_IN:
                depth += 1
                add("fault_in_call")
            elif a == "fault_in_readable":
                in_fault_in_readable = True
                window = None
            elif isinstance(a, str) and a.endswith("write_begin"):
                add("write_begin")
                add("page_cache_lookup")
            elif isinstance(a, str) and a.endswith("write_end"):
                add("write_end")
        elif kind == tp.EXIT:
            if a == FAULT_IN:
                depth -= 1
            elif a == "fault_in_readable":
                in_fault_in_readable = False
                if window is not None and isinstance(b, int):
                    addr, size = window
                    done = size - b
                    add("fault_in_touch", _pages(addr, done) + (1 if b else 0))
                window = None
            elif isinstance(a, str) and a.endswith("write_end") and isinstance(b, int) and b > 0:
                add("dirty_accounting")
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
