"""Views of the event log: an ftrace ``function_graph`` trace, and the tracepoints per call.

``function_graph`` (Documentation/trace/ftrace.rst): function entries and exits nest as the
tracer shows them; the other events appear as the ``/* ... */`` comments ``trace_printk()``
leaves in a function_graph trace, the kernel's own tracepoints as the tracer prints them inline
(``/* page_fault_kernel: ... */``). There is no duration column yet: the model has no clock until
events are priced.

``model_call_traces``: the tracepoints each call fired, one string each in the form of the
README's "Tracepoints" contract, the same form the oracle renders the real kernel's events in
(``writepath.oracle.tracing``), so that the two can be compared string for string.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from writepath.kernel import tracepoints as tp
from writepath.kernel.constants import PAGE_SIZE
from writepath.kernel.tracepoints import Event

#: The functions that start a call: the syscalls the model enters first.
SYSCALLS = frozenset({"ksys_write", "ksys_pwrite64", "do_writev", "do_pwritev", "ksys_lseek"})

#: A user region as the contract names addresses in it: (name, first address, end address).
Region = tuple[str, int, int]


def _address(addr: int, regions: Sequence[Region]) -> str | None:
    """``REGION+OFF``, ``null+OFF`` in the first page, or None for any other address."""
    if 0 <= addr < PAGE_SIZE:
        return f"null+{addr}"
    for name, start, end in regions:
        if start <= addr < end:
            return f"{name}+{addr - start}"
    return None


def render_tracepoint(name: str, fields: object, regions: Sequence[Region]) -> str | None:
    """One tracepoint in the contract's form; None for a fault outside the scenario's memory."""
    assert isinstance(fields, tuple)
    if name == "page_fault_kernel":
        addr, ip, error = fields
        where = _address(addr, regions)
        if where is None:
            return None
        return f"page_fault_kernel addr={where} ip={ip} error=0x{error:x}"
    if name in ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache"):
        file, index, order = fields
        return f"{name} file={file} index={index} order={order}"
    if name == "mm_filemap_fault":
        file, index = fields
        return f"{name} file={file} index={index}"
    if name == "mm_filemap_map_pages":
        file, start, end = fields
        return f"{name} file={file} start={start} end={end}"
    if name == "iomap_iter":
        _file, pos, length, status, flags = fields
        return f"iomap_iter pos={pos} length={length} status={status} flags={'|'.join(flags)}"
    if name.startswith("ext4_") and len(fields) == 3:
        _file, pos, length = fields
        return f"{name} pos={pos} len={length}"
    if name.startswith("ext4_"):
        _file, pos, length, copied = fields
        return f"{name} pos={pos} len={length} copied={copied}"
    return f"{name} {fields}"


def model_call_traces(
    events: Iterable[Event], regions: Sequence[Region] = ()
) -> list[tuple[str, ...]]:
    """The tracepoints of each call in an event log of a run, one tuple of strings per call.

    A call starts where a syscall is entered (``ksys_write``, ``ksys_pwrite64``, ``do_writev``,
    ``do_pwritev``, ``ksys_lseek``). ``regions`` names user addresses as the contract does;
    faults elsewhere are left out, as the oracle leaves them out.
    """
    calls: list[list[str]] = []
    depth = 0
    for kind, _pid, a, b in events:
        if kind == tp.ENTER:
            if depth == 0 and a in SYSCALLS:
                calls.append([])
            depth += 1
        elif kind == tp.EXIT:
            depth -= 1
        elif kind == tp.TRACEPOINT and calls:
            assert isinstance(a, str)
            text = render_tracepoint(a, b, regions)
            if text is not None:
                calls[-1].append(text)
    return [tuple(c) for c in calls]


_HEADER = """# tracer: function_graph
#
# CPU  DURATION                  FUNCTION CALLS
# |     |   |                     |   |   |   |
"""


def _comment(kind: str, a: object, b: object) -> str:
    if kind == tp.STAC:
        where = f"{a:#x}" if isinstance(a, int) else "iovec array"
        return f"stac  /* user access window opens: {where}, {b} bytes */"
    if kind == tp.CLAC:
        return "clac  /* user access window closes */"
    if kind == tp.PAGE_FAULT:
        return (
            f"/* page fault at {a:#x}: {b} */" if isinstance(a, int) else f"/* page fault: {b} */"
        )
    if kind == tp.COPY:
        return f"/* copied {b} of {a} bytes */"
    if kind == tp.FOLIO_LOCK:
        return f"/* folio_lock index {a} (inode {b}) */"
    if kind == tp.FOLIO_UNLOCK:
        return f"/* folio_unlock index {a} (inode {b}) */"
    if kind == tp.LOCK_WAIT:
        return f"/* sleeps on {a}, held by task {b} */"
    if kind == tp.RETRY:
        return f"/* no progress at pos {a}, {b} bytes: retry */"
    if kind == tp.DEADLOCK:
        return f"/* DEADLOCK: {a} */"
    if kind == tp.LIVELOCK:
        return f"/* LIVELOCK: {a} */"
    if kind == tp.TRACEPOINT:
        assert isinstance(a, str)
        return f"/* {render_tracepoint(a, b, ()) or _raw_fault(b)} */"
    return f"/* {kind} {a} {b} */"


def _raw_fault(fields: object) -> str:
    """A fault outside any named region, with its raw address (the function_graph view)."""
    assert isinstance(fields, tuple)
    addr, ip, error = fields
    return f"page_fault_kernel addr={addr:#x} ip={ip} error=0x{error:x}"


def function_graph(events: Iterable[Event], cpu: int = 0) -> str:
    lines = [_HEADER.rstrip("\n")]
    depth = 1
    pending: str | None = None  # an entry not yet known to have children
    for kind, _pid, a, b in events:
        prefix = f" {cpu})               |  "
        if kind == tp.ENTER:
            if pending is not None:
                lines.append(pending + " {")
                depth += 1
            pending = f"{prefix}{'  ' * (depth - 1)}{a}()"
            continue
        if kind == tp.EXIT:
            if pending is not None:
                lines.append(f"{pending};  /* = {b} */")
                pending = None
            else:
                depth -= 1
                lines.append(f"{prefix}{'  ' * (depth - 1)}}} /* {a} = {b} */")
            continue
        if pending is not None:
            lines.append(pending + " {")
            depth += 1
            pending = None
        lines.append(f"{prefix}{'  ' * (depth - 1)}{_comment(kind, a, b)}")
    if pending is not None:
        lines.append(pending + " {")
    return "\n".join(lines) + "\n"
