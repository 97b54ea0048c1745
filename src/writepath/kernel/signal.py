"""A fatal signal to another thread — kernel/signal.c (v6.14–v6.18).

``kill_pid_info()`` with SIGKILL makes ``fatal_signal_pending()`` true for the target: the
buffered write loops test it at the top of each iteration and stop with what they wrote, or
-EINTR if nothing. The signal is kept in ``task.signals``, the list the model already keeps of
the signals a task received.

Simplification: every sleep in the model is uninterruptible (inode_lock(), folio_lock(), the
mmap lock), so a fatal signal wakes no sleeper; the task sees it when it next tests for it, or
when its system call returns (the task then exits: its later calls never run).
"""

from __future__ import annotations

from typing import Final

from writepath.kernel.task import SYSCALL_ENTRY, Sleeps, Task

SIGKILL: Final = "SIGKILL"


def fatal_signal_pending(task: Task) -> bool:
    return SIGKILL in task.signals


def kill_pid_info(task: Task, target: Task, sig: str) -> Sleeps[int]:
    """kill(2)/tgkill(2) of ``target`` with ``sig`` (SIGKILL only)."""
    yield SYSCALL_ENTRY
    if sig not in target.signals:
        target.signals.append(sig)
    task.kernel.generation += 1
    return 0
