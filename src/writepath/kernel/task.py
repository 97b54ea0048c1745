"""Tasks, sleeping locks and scheduling points (include/linux/sched.h, kernel/locking/).

A model task runs kernel code as a Python generator. Code that may sleep or be preempted in the
kernel (a contended lock, the page-fault path, ``cond_resched()``) ``yield``s one of the objects
below; a scheduler (``writepath.sched``) decides who runs next. Code that cannot sleep in the
kernel (an atomic copy, ``write_end``) is a plain function, so it has no scheduling point by
construction. Every generator in ``writepath.kernel`` has the type ``Sleeps[T]``: it yields
scheduling points and returns ``T``.

Simplification: a lock wait is modelled as polling (the scheduler runs a waiter again only once
the lock is free) rather than with wait queues; the order in which waiters get a lock is the
scheduler's choice.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from writepath.kernel import tracepoints as tp

if TYPE_CHECKING:
    from writepath.kernel.kernel import Kernel
    from writepath.kernel.mm import MM
    from writepath.kernel.vfs import File

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SchedPoint:
    """A named place where a task may be preempted (``cond_resched()``, a fault, ...)."""

    name: str


class Lock(Protocol):
    """Anything with an owning task: a folio lock, an inode's i_rwsem."""

    owner: Task | None

    def lock_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class WaitOn:
    """The task sleeps until ``lock`` has no owner."""

    lock: Lock


Sleeps = Generator["SchedPoint | WaitOn", None, T]

# Preallocated scheduling points: yielding one costs no allocation on the hot path.
COND_RESCHED: Final = SchedPoint("cond_resched")
WRITE_BEGIN: Final = SchedPoint("write_begin")
FAULT_IN: Final = SchedPoint("fault_in")
PAGE_FAULT: Final = SchedPoint("page_fault")
SYSCALL_ENTRY: Final = SchedPoint("syscall_entry")


class Stuck(Exception):
    """The model proved that the kernel would never finish this run."""

    verdict = "stuck"

    def __init__(self, evidence: str) -> None:
        super().__init__(evidence)
        self.evidence = evidence


class Deadlock(Stuck):
    """A cycle in the wait-for graph: every task in it waits for a lock the next one holds."""

    verdict = "deadlock"


class Livelock(Stuck):
    """A task repeats the same step without progress and nothing else can change the world."""

    verdict = "livelock"


class Task:
    """struct task_struct, reduced to what the write path reads.

    ``pagefault_disabled`` is ``current->pagefault_disabled`` (a depth, not a flag, as in
    include/linux/uaccess.h). ``emit`` appends to the shared trace buffer.
    """

    __slots__ = (
        "comm",
        "emit",
        "files",
        "kernel",
        "mm",
        "pagefault_disabled",
        "pid",
        "rlimit_fsize",
        "signals",
        "stall_key",
        "stalls",
    )

    def __init__(self, kernel: Kernel, pid: int, mm: MM, comm: str = "writer") -> None:
        self.pid = pid
        self.comm = comm
        self.kernel = kernel
        self.mm = mm
        self.files: dict[int, File] = {}
        self.pagefault_disabled = 0
        self.emit = kernel.events.append
        self.rlimit_fsize: int | None = None
        self.signals: list[str] = []
        # Livelock detection: the state seen at the last iteration that made no progress.
        self.stall_key: tuple[int, ...] | None = None
        self.stalls = 0

    def __repr__(self) -> str:
        return f"<task {self.pid} {self.comm}>"


class SleepingLock:
    """A mutex or rw_semaphore taken for writing (inode->i_rwsem)."""

    __slots__ = ("name", "owner")

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: Task | None = None

    def lock_name(self) -> str:
        return self.name


def lock_acquire(task: Task, lock: Lock) -> Sleeps[None]:
    """Take ``lock``, sleeping while another task holds it.

    A task asking for a lock it already holds sleeps forever, as a kernel mutex would; the
    scheduler recognises that as a one-task cycle.
    """
    holder = lock.owner
    if holder is not None:
        task.emit((tp.LOCK_WAIT, task.pid, lock.lock_name(), holder.pid))
        yield from wait_for_unlock(lock)
    lock.owner = task


def wait_for_unlock(lock: Lock) -> Sleeps[None]:
    """Sleep until ``lock`` has no owner, reading the owner afresh after every sleep.

    A waiter checks the owner before it sleeps; mypy keeps that check's narrowing across a
    ``yield``, and mypyc (``WRITEPATH_MYPYC=1``) enforces it, so a re-check in the same function
    would read the released lock as a type error. Here nothing is narrowed on entry.
    """
    while lock.owner is not None:
        yield WaitOn(lock)


def lock_release(task: Task, lock: Lock) -> None:
    assert lock.owner is task, f"{task} releases {lock.lock_name()} held by {lock.owner}"
    lock.owner = None


def note_no_progress(task: Task, key: tuple[int, ...], limit: int = 100_000) -> None:
    """Record an iteration of a retry loop that made no progress; raise Livelock when proven.

    ``key`` is the loop's own state (position, bytes left, chunk). Together with the kernel's
    world generation, which every change to page tables, the page cache or i_size bumps, it
    determines the next iteration completely when no other task can run. Seeing the same key
    twice in a row with nobody else runnable therefore proves the loop will spin forever. The
    ``limit`` guards the case where other tasks keep running but never help.
    """
    full = (*key, task.kernel.generation)
    task.stalls += 1
    if full == task.stall_key and not task.kernel.others_can_run(task):
        raise Livelock(
            f"task {task.pid} retried pos={key[0]} with {key[1]} bytes left "
            f"{task.stalls} times without progress and no other task can change the world"
        )
    if task.stalls >= limit:
        raise Livelock(f"task {task.pid} retried {task.stalls} times without progress")
    task.stall_key = full


def note_loop_start(task: Task) -> None:
    """A write loop begins: the no-progress record belongs to one loop invocation, as the
    loop's own variables do. Without this reset a zero-progress pass of an earlier call (say a
    pwrite that failed with EFAULT) would make the first zero-progress pass of the next call
    look like a repetition."""
    task.stall_key = None
    task.stalls = 0


def note_progress(task: Task) -> None:
    task.stall_key = None
    task.stalls = 0
