"""User access: access_ok(), user-access windows, pagefault_disable(), raw copies.

Follows arch/x86/include/asm/uaccess_64.h, arch/x86/lib/copy_user_64.S and include/linux/uaccess.h
(v6.12–v6.18). A user-access window is one STAC/CLAC pair on x86 (SMAP): it is opened by
``raw_copy_from_user()`` and by ``user_read_access_begin()``, and emitted as ``stac``/``clac``
events, which is what the seed patch counts.

The copy is byte-exact: with page faults disabled it stops at the first byte whose page is not
present and reports the rest as not copied, as ``rep movsb`` (FSRM, this model's CPU) does after the
exception-table fixup. Where source and destination are the same memory, the copy is the forward
byte copy ``rep movsb`` architecturally performs, not a snapshot (see ``forward_copy``).

A copy into a page-cache folio also moves the folio's record of uninitialized memory
(``writepath.kernel.pagecache``): the bytes it writes are initialized, unless the source bytes
were themselves uninitialized memory of a folio mapped into user space, which the copy carries
over byte for byte. The check costs one type test per page when no folio is involved.
"""

from __future__ import annotations

from typing import Final

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import OFFSET_MASK, PAGE_SHIFT, PAGE_SIZE, USER_PTR_MAX
from writepath.kernel.mm import do_user_addr_fault
from writepath.kernel.pagecache import FolioData, Ranges, ranges_add, ranges_clear, ranges_within
from writepath.kernel.task import PAGE_FAULT, Sleeps, Task
from writepath.kernel.tracepoints import CLAC, FAULT_REFUSED, STAC, trace_page_fault_kernel
from writepath.kernel.tracepoints import PAGE_FAULT as PAGE_FAULT_EVENT

#: One past the last valid user address. access_ok() is an inline in the kernel, and the hot
#: callers of the model inline it too: ``end = addr + size``, then
#: ``addr >= 0 and end <= USER_END and end >= addr``.
USER_END: Final = USER_PTR_MAX + 1


def access_ok(addr: int, size: int) -> bool:
    """x86 ``__access_ok()`` for a run-time size: the whole range below USER_PTR_MAX, no wrap."""
    end = addr + size
    return addr >= 0 and end <= USER_END and end >= addr


def pagefault_disable(task: Task) -> None:
    task.pagefault_disabled += 1


def pagefault_enable(task: Task) -> None:
    task.pagefault_disabled -= 1


def user_read_access_begin(task: Task, addr: int, size: int) -> bool:
    """access_ok() and STAC; False (and no window) for a range outside user space."""
    if not access_ok(addr, size):
        return False
    task.emit((tp.STAC, task.pid, addr, size))
    return True


def user_read_access_end(task: Task) -> None:
    task.emit((tp.CLAC, task.pid, None, None))


def forward_copy(dst: bytearray, doff: int, src: bytearray | bytes, soff: int, n: int) -> None:
    """Copy ``n`` bytes front to back, as ``rep movsb`` does.

    When ``src`` and ``dst`` are the same buffer and the destination starts inside the source
    range after its start, each byte read may already have been overwritten by the copy: the
    result repeats the first ``doff - soff`` source bytes. Every other case equals memmove.
    """
    if src is dst and soff < doff < soff + n:
        period = bytes(src[soff:doff])
        reps, rest = divmod(n, len(period))
        dst[doff : doff + n] = period * reps + period[:rest]
    else:
        dst[doff : doff + n] = src[soff : soff + n]


def _carry_uninit(
    dst: FolioData | None, doff: int, src: bytearray | bytes, soff: int, n: int
) -> None:
    """Update the uninitialized ranges after ``forward_copy(dst, doff, src, soff, n)``."""
    src_uninit: Ranges = []
    if type(src) is FolioData and src.uninit:
        if src is dst and soff < doff < soff + n:
            # The forward copy repeats src[soff:doff]: so does its uninitialized part.
            period = doff - soff
            base = ranges_within(src.uninit, soff, doff)
            for rep in range(0, n, period):
                for s, e in base:
                    lo, hi = s - soff + rep, min(e - soff + rep, n)
                    if lo < hi:
                        src_uninit.append((lo, hi))
        else:
            within = ranges_within(src.uninit, soff, soff + n)
            src_uninit = [(s - soff, e - soff) for s, e in within]
    if dst is None:
        return
    uninit = dst.uninit
    if uninit:
        ranges_clear(uninit, doff, doff + n)
    for s, e in src_uninit:
        ranges_add(uninit, doff + s, doff + e)


def raw_copy_from_user(task: Task, dst: bytearray, doff: int, src: int, n: int, ip: str) -> int:
    """Copy ``n`` user bytes at ``src`` to ``dst[doff:]`` with page faults disabled.

    One user-access window. Returns the number of bytes *not* copied. The caller checked
    access_ok(). This is the atomic form: it never sleeps, so it is a plain function.
    ``copy_user_generic()`` is inlined into its caller, so a fault's ip is the caller: ``ip``
    names it. With FSRM the copy is one ``rep movsb``: the first page that is not present
    faults once and the exception table ends the copy there (no byte-wise retry).
    """
    pte = task.mm.pte
    folio_dst = dst if type(dst) is FolioData else None
    emit = task.emit
    emit((STAC, task.pid, src, n))
    copied = 0
    while copied < n:
        addr = src + copied
        ref = pte.get(addr >> PAGE_SHIFT)
        if ref is None:
            trace_page_fault_kernel(task, addr, ip)
            # The CPU faults. With faults disabled the handler refuses and the exception table
            # ends the copy here; otherwise the caller handles the fault and resumes.
            if task.pagefault_disabled:
                emit((PAGE_FAULT_EVENT, task.pid, addr, FAULT_REFUSED))
            break
        off = addr & OFFSET_MASK
        k = PAGE_SIZE - off
        if k > n - copied:
            k = n - copied
        buf, boff = ref
        soff = boff + off
        d = doff + copied
        if buf is dst and soff < d < soff + k:
            forward_copy(dst, d, buf, soff, k)
        else:
            dst[d : d + k] = buf[soff : soff + k]  # forward_copy() of distinct memory
        if type(buf) is FolioData:
            _carry_uninit(folio_dst, d, buf, soff, k)
        elif folio_dst is not None and folio_dst.uninit:
            # An initialized source: the bytes written are initialized (_carry_uninit() with
            # nothing to carry).
            ranges_clear(folio_dst.uninit, d, d + k)
        copied += k
    emit((CLAC, task.pid, None, None))
    return n - copied


def get_user_byte(task: Task, addr: int) -> Sleeps[bool]:
    """``unsafe_get_user()`` of one byte inside an open window: fault the page in if needed.

    Returns False where the access faults and cannot be resolved (the ``goto out`` of the
    exception table). Its only caller is fault_in_readable(), where the access is inlined: the
    fault's ip. The byte read is discarded: only the fault matters to callers.
    """
    if (addr >> PAGE_SHIFT) in task.mm.pte:
        return True
    trace_page_fault_kernel(task, addr, "fault_in_readable")
    if task.pagefault_disabled:
        task.emit((tp.PAGE_FAULT, task.pid, addr, tp.FAULT_REFUSED))
        return False
    yield PAGE_FAULT
    return (yield from do_user_addr_fault(task, addr))
