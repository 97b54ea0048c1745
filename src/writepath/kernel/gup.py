"""fault_in_readable() — mm/gup.c (v6.13–v6.18 form).

Touches the first byte of the range and then the first byte of every following page, inside one
user-access window, so that each page is present before a copy that cannot fault. Returns the
number of bytes *not* faulted in, counted from the first page that could not be touched.

The loop is the v6.13+ one: it walks ``cur`` from the start to the end a page at a time and stops
once ``cur`` is zero ("overflow to 0"). That test also holds for a range that *starts* at address
0: a NULL base passes access_ok() on x86-64, yet nothing is touched and the whole size is
reported not faulted in, without a page fault (LTP writev05's NULL iovec).
"""

from __future__ import annotations

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import OFFSET_MASK, PAGE_SIZE
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
    end = start + size
    cur = start
    while cur and cur < end:
        if not (yield from get_user_byte(task, cur)):
            break
        cur = (cur + PAGE_SIZE) & ~OFFSET_MASK  # PAGE_ALIGN_DOWN(cur + PAGE_SIZE)
    user_read_access_end(task)
    ret = size - min(size, cur - start)
    task.emit((tp.EXIT, task.pid, "fault_in_readable", ret))
    return ret
