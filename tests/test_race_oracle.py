"""The xfs MADV_DONTNEED race on the real kernel (userfaultfd) agrees with the explorer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from writepath.oracle.race import model_short_copy_schedule, replay_dontneed_race
from writepath.scenario import fill, load_scenario
from writepath.tracecmp import first_trace_difference

RACE = Path(__file__).resolve().parents[1] / "scenarios" / "race"

needs_uffd = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/userfaultfd"),
    reason="userfaultfd replay needs root and /dev/userfaultfd",
)


def test_model_schedule_takes_the_short_copy_at_a() -> None:
    """The explorer's simplest short-copy schedule on xfs (the machine's design): the dropper
    runs once, while B faults in; A is faulted in twice, the write still writes 4096 bytes."""
    s = load_scenario(RACE / "race-xfs-dontneed-between-fault-in-and-copy.toml")
    schedule, model = model_short_copy_schedule(s, "v6.18")
    assert schedule != "-" and "dropper" in schedule
    assert model.faults == (0, 1, 0)
    assert (model.ret, model.errno, model.size) == (4096, None, 8192)
    # The writer's path: fault-in of A and B, the atomic copy's refused fault at A (A dropped
    # meanwhile), the retry's fault-in of A; the dropper's events are not the writer's.
    assert model.trace is not None
    faults = [t.split()[1:3] for t in model.trace if t.startswith("page_fault_kernel")]
    assert faults == [
        ["addr=buf+2048", "ip=fault_in_readable"],
        ["addr=buf+4096", "ip=fault_in_readable"],
        ["addr=buf+2048", "ip=copy_folio_from_iter_atomic"],
        ["addr=buf+2048", "ip=fault_in_readable"],
    ]


@needs_uffd
def test_real_xfs_agrees_with_the_explorer() -> None:
    from writepath.mounts import FsPool, Unavailable
    from writepath.oracle.tracing import TraceUnavailable

    s = load_scenario(RACE / "race-xfs-dontneed-between-fault-in-and-copy.toml")
    try:
        with FsPool() as pool:
            real = replay_dontneed_race(pool.directory("xfs"), s, trace=True)
    except (Unavailable, TraceUnavailable) as e:
        pytest.skip(str(e))
    _, model = model_short_copy_schedule(s, "v6.18")
    # A faulted, B faulted (A dropped there), then A again: the copy came back short at A.
    assert real.faults == (0, 1, 0)
    assert real.end_state() == model.end_state()
    # The writer's tracepoints on the kernel: the atomic copy's fault at A, with no fault-in
    # between it and the fault-ins of A and B, is the short copy the prefault did not prevent.
    assert real.trace is not None and model.trace is not None
    kernel_faults = [t.split()[1:3] for t in real.trace if t.startswith("page_fault_kernel")]
    assert kernel_faults[:3] == [
        ["addr=buf+2048", "ip=fault_in_readable"],
        ["addr=buf+4096", "ip=fault_in_readable"],
        ["addr=buf+2048", "ip=copy_folio_from_iter_atomic"],
    ]
    # The model's trace for the same schedule, event for event (the first difference if not).
    difference = first_trace_difference([model.trace], [real.trace])
    assert difference is None, difference
    # What was written, independently of the model: 4096 zero bytes, then the old pattern.
    import hashlib

    want = bytes(4096) + fill("pattern", 4096, 4096)
    assert real.sha256 == hashlib.sha256(want).hexdigest() and real.ret == 4096
