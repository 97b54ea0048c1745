"""iov_iter driven by range tables, in the manner of the kernel's KUnit iov_iter tests
(lib/tests/kunit_iov_iter.c): each row gives the segments, an operation and what must follow."""

from __future__ import annotations

import pytest

from writepath.kernel.filemap import DESIGNS
from writepath.kernel.gup import fault_in_readable
from writepath.kernel.iov_iter import (
    ITER_SOURCE,
    IovIter,
    __copy_from_iter,
    fault_in_iov_iter_readable,
    iov_iter_advance,
    iov_iter_init,
    iov_iter_revert,
    iov_iter_ubuf,
)
from writepath.kernel.kernel import Kernel
from writepath.kernel.mm import MM, VMA, mmap_region
from writepath.kernel.task import Task

P = 4096
BASE = 0x10000000


def drive(gen):  # type: ignore[no-untyped-def]
    """Run a kernel generator that must not block."""
    try:
        while True:
            point = next(gen)
            assert type(point).__name__ == "SchedPoint", point
    except StopIteration as stop:
        return stop.value


def make_task(readable_pages: list[int], present_pages: list[int]) -> Task:
    """User memory at BASE: the listed pages are readable anonymous memory (page k filled with
    byte k+1 when present); others are holes."""
    kernel = Kernel("v6.14", DESIGNS["v6.14"])
    task = Task(kernel, 1, MM())
    for k in readable_pages:
        mmap_region(task, task.mm, VMA(BASE + k * P, BASE + (k + 1) * P, True, True, False))
    for k in present_pages:
        task.mm.pte[(BASE >> 12) + k] = (bytearray([k + 1]) * P, 0)
    return task


ADVANCE_REVERT = [
    # segments,                      advance, then (seg index, iov_offset, nr_segs, count)
    ([(0, 10), (100, 20)], 5, (0, 5, 2, 25)),
    ([(0, 10), (100, 20)], 10, (1, 0, 1, 20)),
    ([(0, 10), (50, 0), (100, 20)], 10, (2, 0, 1, 20)),  # zero-length segment skipped
    ([(0, 10), (100, 20)], 29, (1, 19, 1, 1)),
    ([(0, 10), (100, 20)], 30, (2, 0, 0, 0)),
]


@pytest.mark.parametrize(("segs", "n", "after"), ADVANCE_REVERT)
def test_iovec_advance_then_revert(
    segs: list[tuple[int, int]], n: int, after: tuple[int, ...]
) -> None:
    i = iov_iter_init(ITER_SOURCE, list(segs), sum(s[1] for s in segs))
    iov_iter_advance(i, n)
    assert (i.iov_idx, i.iov_offset, i.nr_segs, i.count) == after
    iov_iter_revert(i, n)
    assert i.count == sum(s[1] for s in segs)
    # Back at the start of the data (a zero-length first segment would be skipped).
    assert (i.iov_idx, i.iov_offset) == (0, 0)


def test_ubuf_advance_revert() -> None:
    i = iov_iter_ubuf(ITER_SOURCE, 1000, 300)
    iov_iter_advance(i, 120)
    assert (i.iov_offset, i.count) == (120, 180)
    iov_iter_revert(i, 20)
    assert (i.iov_offset, i.count) == (100, 200)


COPY_STOPS = [
    # present pages, source offset, length, bytes copied (atomic: stops at the first absent page)
    ([0, 1], 0, 2 * P, 2 * P),
    ([0], 0, 2 * P, P),
    ([0], 100, P, P - 100),
    ([], 0, P, 0),
    ([1], 0, 2 * P, 0),  # first page absent: nothing, even though the second is there
]


@pytest.mark.parametrize(("present", "off", "n", "copied"), COPY_STOPS)
def test_atomic_copy_is_byte_exact(present: list[int], off: int, n: int, copied: int) -> None:
    task = make_task([0, 1], present)
    task.pagefault_disabled = 1
    dst = bytearray(3 * P)
    i = iov_iter_ubuf(ITER_SOURCE, BASE + off, n)
    assert __copy_from_iter(task, dst, 0, n, i) == copied
    assert i.count == n - copied
    # Every copied byte came from its page; nothing after the stop was written.
    for k in range(copied):
        assert dst[k] == (off + k) // P + 1
    assert dst[copied:] == bytes(len(dst) - copied)


def test_iovec_copy_stops_at_first_short_segment() -> None:
    task = make_task([0, 1], [0])
    task.pagefault_disabled = 1
    segs = [(BASE, 10), (BASE + P, 10), (BASE + 20, 10)]
    i = iov_iter_init(ITER_SOURCE, segs, 30)
    dst = bytearray(30)
    assert __copy_from_iter(task, dst, 0, 30, i) == 10
    assert (i.iov_idx, i.iov_offset, i.count) == (1, 0, 20)


FAULT_IN = [
    # readable pages, segments, size asked, bytes NOT faulted in (kernel-code.md §4-5)
    ([0, 1], [(BASE, 2 * P)], 2 * P, 0),
    ([0], [(BASE, 2 * P)], 2 * P, P),
    ([0], [(BASE + 100, 2 * P)], 2 * P, P + 100),  # counted from the first page not reached
    ([], [(BASE, P)], P, P),
    ([0], [(BASE, 10), (BASE + P, 10), (BASE + 20, 10)], 30, 20),  # stops at a bad segment
    ([0], [(BASE, 10), (BASE + P, 0), (BASE + 20, 10)], 20, 0),  # zero-length: never touched
    ([0, 1], [(BASE, 2 * P)], P, 0),  # only `size` bytes are considered
]


@pytest.mark.parametrize(("readable", "segs", "size", "left"), FAULT_IN)
def test_fault_in_iov_iter_readable(
    readable: list[int], segs: list[tuple[int, int]], size: int, left: int
) -> None:
    task = make_task(readable, [])
    total = sum(s[1] for s in segs)
    i: IovIter = (
        iov_iter_ubuf(ITER_SOURCE, segs[0][0], total)
        if len(segs) == 1
        else iov_iter_init(ITER_SOURCE, list(segs), total)
    )
    assert drive(fault_in_iov_iter_readable(task, i, size)) == left
    assert i.count == total  # fault-in never advances the iterator


def test_fault_in_readable_one_window_touching_one_byte_per_page() -> None:
    task = make_task([0, 1, 2], [])
    assert drive(fault_in_readable(task, BASE + 5, 3 * P - 5)) == 0
    kinds = [e[0] for e in task.kernel.events]
    assert kinds.count("stac") == 1 and kinds.count("clac") == 1
    assert sorted(task.mm.pte) == [(BASE >> 12) + k for k in range(3)]


def test_fault_in_does_not_touch_past_the_range() -> None:
    """LTP writev06: the page after the last byte must not be touched."""
    task = make_task([0, 1], [])
    assert drive(fault_in_readable(task, BASE + P - 1, 1)) == 0
    assert sorted(task.mm.pte) == [BASE >> 12]
