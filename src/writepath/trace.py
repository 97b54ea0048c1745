"""The event log as an ftrace ``function_graph`` trace (Documentation/trace/ftrace.rst).

Function entries and exits nest as the tracer shows them; the other events appear as the
``/* ... */`` comments ``trace_printk()`` leaves in a function_graph trace. There is no duration
column yet: the model has no clock until events are priced.
"""

from __future__ import annotations

from collections.abc import Iterable

from writepath.kernel import tracepoints as tp
from writepath.kernel.tracepoints import Event

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
    return f"/* {kind} {a} {b} */"


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
