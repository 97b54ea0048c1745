"""WARN_ON() — include/asm-generic/bug.h (v6.18).

The kernel prints a warning with a backtrace to its log and goes on. The model logs a ``warn``
event in the kernel's event log instead: (``warn``, pid, the function that warned, what it
found). Nothing in the model stops on it; whoever judges a run reads the log.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.task import Task

WARN: Final = "warn"


def WARN_ON(task: Task, condition: bool, where: str, what: str) -> bool:
    """Log a warning if ``condition`` holds; return ``condition``, as the macro does."""
    if condition:
        task.emit((WARN, task.pid, where, what))
    return condition
