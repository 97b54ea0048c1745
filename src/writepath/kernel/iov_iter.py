"""struct iov_iter for user memory: ITER_UBUF and ITER_IOVEC — lib/iov_iter.c, include/linux/uio.h.

Follows v6.12–v6.18: ``iov_iter_advance``, ``iov_iter_revert``, ``iterate_ubuf``/``iterate_iovec``
(include/linux/iov_iter.h) with the ``copy_from_user_iter`` step, ``copy_page_from_iter_atomic``
(≤ v6.15) and ``copy_folio_from_iter_atomic`` (v6.16+, d9736929445e), and
``fault_in_iov_iter_readable``. Kernel-memory iterators (kvec, bvec, xarray) are not modelled:
the write path under study only sees user memory.

The iovec array lives in the iterator as a list of ``(iov_base, iov_len)``; ``iov_idx`` plays the
part of the ``__iov`` pointer and ``nr_segs`` counts the segments from it on, as in the kernel.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import MAX_RW_COUNT, PAGE_SIZE
from writepath.kernel.gup import fault_in_readable
from writepath.kernel.pagecache import Folio
from writepath.kernel.task import Sleeps, Task
from writepath.kernel.tracepoints import COPY, ENTER, EXIT
from writepath.kernel.uaccess import USER_END, access_ok, raw_copy_from_user

ITER_UBUF: Final = 0
ITER_IOVEC: Final = 1
ITER_SOURCE: Final = True  # data_source: the iterator is read from (a write)

_NO_SEGMENTS: list[tuple[int, int]] = []

#: Where copy_folio_from_iter_atomic()'s copy faults: it inlines the whole iteration.
COPY_FOLIO_IP: Final = "copy_folio_from_iter_atomic"


class IovIter:
    """struct iov_iter (user-backed types only)."""

    __slots__ = (
        "count",
        "data_source",
        "iov",
        "iov_idx",
        "iov_offset",
        "iter_type",
        "nr_segs",
        "ubuf",
    )

    def __init__(
        self,
        iter_type: int,
        data_source: bool,
        count: int,
        ubuf: int = 0,
        iov: list[tuple[int, int]] | None = None,
    ) -> None:
        self.iter_type = iter_type
        self.data_source = data_source
        self.iov_offset = 0
        self.count = count
        self.ubuf = ubuf
        self.iov_idx = 0
        if iov is None:
            # ITER_UBUF: no segment array. The shared empty list is never written (only an
            # ITER_IOVEC iterator indexes its segments), so a new one per call is not needed.
            self.iov = _NO_SEGMENTS
            self.nr_segs = 1
        else:
            self.iov = iov
            self.nr_segs = len(iov) if iter_type == ITER_IOVEC else 1

    def __repr__(self) -> str:
        kind = "ubuf" if self.iter_type == ITER_UBUF else "iovec"
        return f"<iov_iter {kind} count={self.count} off={self.iov_offset} seg={self.iov_idx}>"


def iov_iter_ubuf(data_source: bool, buf: int, count: int) -> IovIter:
    return IovIter(ITER_UBUF, data_source, count, ubuf=buf)


def iov_iter_init(data_source: bool, iov: list[tuple[int, int]], count: int) -> IovIter:
    return IovIter(ITER_IOVEC, data_source, count, iov=iov)


def iov_iter_count(i: IovIter) -> int:
    return i.count


def iov_iter_truncate(i: IovIter, count: int) -> None:
    if i.count > count:
        i.count = count


def iov_iter_current_addr(i: IovIter) -> int:
    """The user address the iterator reads next (first non-empty segment for ITER_IOVEC)."""
    if i.iter_type == ITER_UBUF:
        return i.ubuf + i.iov_offset
    idx, skip = i.iov_idx, i.iov_offset
    while idx < len(i.iov) and i.iov[idx][1] - skip == 0:
        idx, skip = idx + 1, 0
    return i.iov[idx][0] + skip if idx < len(i.iov) else 0


def iov_iter_advance(i: IovIter, size: int) -> None:
    if size > i.count:
        size = i.count
    if i.iter_type == ITER_UBUF:
        i.iov_offset += size
        i.count -= size
        return
    # iov_iter_iovec_advance()
    if not i.count:
        return
    i.count -= size
    size += i.iov_offset
    idx, end = i.iov_idx, i.iov_idx + i.nr_segs
    while idx < end:
        seg_len = i.iov[idx][1]
        if size < seg_len:
            break
        size -= seg_len
        idx += 1
    i.iov_offset = size
    i.nr_segs -= idx - i.iov_idx
    i.iov_idx = idx


def iov_iter_revert(i: IovIter, unroll: int) -> None:
    if not unroll:
        return
    if unroll > MAX_RW_COUNT:
        return  # WARN_ON in the kernel
    i.count += unroll
    if unroll <= i.iov_offset:
        i.iov_offset -= unroll
        return
    unroll -= i.iov_offset
    if i.iter_type == ITER_UBUF:
        raise AssertionError("iov_iter_revert beyond the start of a ubuf iterator (BUG())")
    idx = i.iov_idx
    while True:
        idx -= 1
        n = i.iov[idx][1]
        i.nr_segs += 1
        if unroll <= n:
            i.iov_idx = idx
            i.iov_offset = n - unroll
            return
        unroll -= n


def copy_from_user_iter(
    task: Task, uaddr: int, length: int, to: bytearray, toff: int, ip: str
) -> int:
    """The user step of __copy_from_iter(): access_ok(), then one raw copy; bytes not copied.
    Inlined, like the whole iteration, into the copy function ``ip`` names."""
    if access_ok(uaddr, length):
        return raw_copy_from_user(task, to, toff, uaddr, length, ip)
    return length


def __copy_from_iter(
    task: Task, to: bytearray, toff: int, length: int, i: IovIter, ip: str = "_copy_from_iter"
) -> int:
    """Copy up to ``length`` bytes from the iterator to ``to[toff:]`` and advance it
    (``iterate_and_advance()`` with ``copy_from_user_iter``). Returns the bytes copied; stops at
    the first segment that comes up short. ``ip`` is the function it is inlined into, where a
    fault is taken: ``_copy_from_iter`` for a plain ``copy_from_iter()``."""
    if i.count < length:
        length = i.count
    if not length:
        return 0
    if i.iter_type == ITER_UBUF:
        # iterate_ubuf() with copy_from_user_iter(), both inlined as in the kernel.
        uaddr = i.ubuf + i.iov_offset
        if access_ok(uaddr, length):
            progress = length - raw_copy_from_user(task, to, toff, uaddr, length, ip)
        else:
            progress = 0
        i.iov_offset += progress
        i.count -= progress
        return progress
    # iterate_iovec()
    iov = i.iov
    idx = i.iov_idx
    skip = i.iov_offset
    progress = 0
    while True:
        base, seg_len = iov[idx]
        part = seg_len - skip
        if part > length:
            part = length
        if part:
            remain = copy_from_user_iter(task, base + skip, part, to, toff + progress, ip)
            consumed = part - remain
            progress += consumed
            skip += consumed
            length -= consumed
            if skip < seg_len:
                break
        idx += 1
        skip = 0
        if not length:
            break
    i.nr_segs -= idx - i.iov_idx
    i.iov_idx = idx
    i.iov_offset = skip
    i.count -= progress
    return progress


def page_copy_sane(folio: Folio, offset: int, n: int) -> bool:
    return offset >= 0 and offset + n <= (PAGE_SIZE << folio.order)


def copy_page_from_iter_atomic(
    task: Task, folio: Folio, offset: int, nbytes: int, i: IovIter
) -> int:
    """The copy of v6.13–v6.15: ``copy_folio_from_iter_atomic()`` was an inline wrapper around
    ``copy_page_from_iter_atomic(&folio->page, ...)``. On x86_64 no page is highmem, so
    ``uses_kmap`` is false and the loop body runs once: a short copy is not retried."""
    emit = task.emit
    pid = task.pid
    emit((ENTER, pid, "copy_page_from_iter_atomic", nbytes))
    copied = 0
    if page_copy_sane(folio, offset, nbytes) and i.data_source:
        task.pagefault_disabled += 1  # kmap_atomic() → pagefault_disable(), an inline
        copied = __copy_from_iter(task, folio.data, offset, nbytes, i, "copy_page_from_iter_atomic")
        task.pagefault_disabled -= 1  # pagefault_enable()
    emit((COPY, pid, nbytes, copied))
    emit((EXIT, pid, "copy_page_from_iter_atomic", copied))
    return copied


def copy_folio_from_iter_atomic(
    task: Task, folio: Folio, offset: int, nbytes: int, i: IovIter
) -> int:
    """The copy of v6.16+ (d9736929445e): loop while the copy makes progress. Without partial
    kmaps (x86_64) a short copy is tried once more from where it stopped, which copies nothing
    more when the next page is still not present: one extra, empty user-access window."""
    emit = task.emit
    pid = task.pid
    emit((ENTER, pid, "copy_folio_from_iter_atomic", nbytes))
    copied = 0
    # page_copy_sane(), an inline.
    if offset >= 0 and offset + nbytes <= (PAGE_SIZE << folio.order) and i.data_source:
        data = folio.data
        while True:
            task.pagefault_disabled += 1  # pagefault_disable(), an inline
            if i.iter_type == ITER_UBUF:
                # __copy_from_iter() is __always_inline, and so are iterate_ubuf() and
                # copy_from_user_iter() in it: the ubuf case of __copy_from_iter(), inline.
                length = nbytes - copied
                if length > i.count:
                    length = i.count
                n = 0
                if length:
                    uaddr = i.ubuf + i.iov_offset
                    end = uaddr + length  # access_ok(), an inline; length is positive here
                    if uaddr >= 0 and end <= USER_END:
                        n = length - raw_copy_from_user(
                            task, data, offset, uaddr, length, COPY_FOLIO_IP
                        )
                        i.iov_offset += n
                        i.count -= n
            else:
                n = __copy_from_iter(task, data, offset, nbytes - copied, i, COPY_FOLIO_IP)
            task.pagefault_disabled -= 1  # pagefault_enable()
            copied += n
            offset += n
            if copied == nbytes or n == 0:
                break
    emit((COPY, pid, nbytes, copied))
    emit((EXIT, pid, "copy_folio_from_iter_atomic", copied))
    return copied


def fault_in_iov_iter_readable(task: Task, i: IovIter, size: int) -> Sleeps[int]:
    """Fault in up to ``size`` bytes of the iterator; the bytes *not* faulted in.

    One ``fault_in_readable()`` (one window) per segment covered; it stops at the first segment
    that could not be faulted in completely. ``== size`` means nothing at all could be.
    """
    task.emit((tp.ENTER, task.pid, "fault_in_iov_iter_readable", size))
    if i.iter_type == ITER_UBUF:
        n = min(size, i.count)
        n -= yield from fault_in_readable(task, i.ubuf + i.iov_offset, n)
        ret = size - n
    else:
        count = min(size, i.count)
        size -= count
        idx, skip = i.iov_idx, i.iov_offset
        while count:
            base, seg_len = i.iov[idx]
            length = min(count, seg_len - skip)
            idx, skip0, skip = idx + 1, skip, 0
            if not length:
                continue
            r = yield from fault_in_readable(task, base + skip0, length)
            count -= length - r
            if r:
                break
        ret = count + size
    task.emit((tp.EXIT, task.pid, "fault_in_iov_iter_readable", ret))
    return ret
