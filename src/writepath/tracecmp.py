"""Comparing the tracepoints of two runs, call by call (``writepath diff --trace``).

Both sides are lists of per-call traces in the README's "Tracepoints" form: the model's from
``writepath.trace.model_call_traces``, the kernel's from the oracle. The first event where they
part is reported with a few events of context on both sides, so that a reader sees where the
paths diverge, not only that they do.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Events shown before and after the first difference.
CONTEXT = 3


def _window(events: Sequence[str], at: int, mark: str) -> list[str]:
    """Lines for events[at - CONTEXT : at + CONTEXT + 1], the event at ``at`` marked."""
    lines = []
    for k in range(max(0, at - CONTEXT), min(len(events), at + CONTEXT + 1)):
        lines.append(f"    {mark if k == at else ' '} {k:3d} {events[k]}")
    if at >= len(events):
        lines.append(f"    {mark} {at:3d} (end of trace)")
    return lines


def first_event_difference(model: Sequence[str], kernel: Sequence[str]) -> int | None:
    """The index of the first event where two traces of one call differ, or None."""
    for k, (a, b) in enumerate(zip(model, kernel, strict=False)):
        if a != b:
            return k
    if len(model) != len(kernel):
        return min(len(model), len(kernel))
    return None


def first_trace_difference(
    model_calls: Sequence[Sequence[str] | None], kernel_calls: Sequence[Sequence[str] | None]
) -> str | None:
    """The first differing event of two runs' traces, with context on both sides; None if
    every call fired the same events. A call without a trace on either side (None: no trace
    was taken) is not compared."""
    if len(model_calls) != len(kernel_calls):
        return f"traces of {len(model_calls)} calls in the model, {len(kernel_calls)} in the kernel"
    for n, (model, kernel) in enumerate(zip(model_calls, kernel_calls, strict=True)):
        if model is None or kernel is None:
            continue
        at = first_event_difference(model, kernel)
        if at is None:
            continue
        return "\n".join(
            [
                f"call[{n}] trace differs at event {at}:",
                "  model:",
                *_window(model, at, ">"),
                "  kernel:",
                *_window(kernel, at, ">"),
            ]
        )
    return None
