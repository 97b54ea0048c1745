"""The model's whole machine: its design of the write loop, its filesystems, its trace buffer.

Nothing here follows one kernel file; this is the container the kernel code reads its
configuration from (``task.kernel``), the way real code reads compile-time and boot-time state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from writepath.kernel.tracepoints import Event

if TYPE_CHECKING:
    from writepath.kernel.filemap import PerformWrite
    from writepath.kernel.task import Task


class Kernel:
    """State shared by every task of one model run.

    ``generation`` is bumped by every change another step could observe (a PTE installed or
    zapped, a folio added, made uptodate or removed, i_size changed); livelock detection compares
    it. ``perform_write`` is the design of ``generic_perform_write`` this kernel was built with.
    """

    __slots__ = (
        "design",
        "events",
        "generation",
        "next_ino",
        "others_can_run",
        "perform_write",
    )

    def __init__(self, design: str, perform_write: PerformWrite) -> None:
        self.design = design
        self.perform_write = perform_write
        self.events: list[Event] = []
        self.generation = 0
        self.next_ino = 1
        # Replaced by the scheduler that drives the tasks; alone, no other task can run.
        self.others_can_run: Callable[[Task], bool] = lambda task: False

    def new_ino(self) -> int:
        ino = self.next_ino
        self.next_ino += 1
        return ino
