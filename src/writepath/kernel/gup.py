"""fault_in_readable() — mm/gup.c (v6.12–v6.18).

Touches the first byte of the range and then the first byte of every following page, inside one
user-access window, so that each page is present before a copy that cannot fault. Returns the
number of bytes *not* faulted in, counted from the first page that could not be touched.
"""

from __future__ import annotations

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import OFFSET_MASK, PAGE_ALIGN, PAGE_SIZE
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.uaccess import (
    get_user_byte,
    user_read_access_begin,
    user_read_access_end,
)


def fault_in_readable(task: Task, uaddr: int, size: int) -> Sleeps[int]:
    """Fault in [uaddr, uaddr + size) for reading; the bytes not faulted in."""
    task.emit((tp.ENTER, task.pid, "fault_in_readable", size))
    if size == 0:
        task.emit((tp.EXIT, task.pid, "fault_in_readable", 0))
        return 0
    if not user_read_access_begin(task, uaddr, size):
        task.emit((tp.EXIT, task.pid, "fault_in_readable", size))
        return size
    start = uaddr
    ok = True
    if uaddr & OFFSET_MASK:
        ok = yield from get_user_byte(task, uaddr)
        if ok:
            uaddr = PAGE_ALIGN(uaddr)
    if ok:
        end = PAGE_ALIGN(start + size)
        while uaddr < end:
            if not (yield from get_user_byte(task, uaddr)):
                break
            uaddr += PAGE_SIZE
    user_read_access_end(task)
    done = uaddr - start
    ret = size - done if size > done else 0
    task.emit((tp.EXIT, task.pid, "fault_in_readable", ret))
    return ret
