"""The xfs MADV_DONTNEED race on the real kernel (userfaultfd) agrees with the explorer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from writepath.oracle.race import model_short_copy_schedule, replay_dontneed_race
from writepath.scenario import fill, load_scenario

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


@needs_uffd
def test_real_xfs_agrees_with_the_explorer() -> None:
    from writepath.mounts import FsPool, Unavailable

    s = load_scenario(RACE / "race-xfs-dontneed-between-fault-in-and-copy.toml")
    try:
        with FsPool() as pool:
            real = replay_dontneed_race(pool.directory("xfs"), s)
    except Unavailable as e:
        pytest.skip(str(e))
    _, model = model_short_copy_schedule(s, "v6.18")
    # A faulted, B faulted (A dropped there), then A again: the copy came back short at A.
    assert real.faults == (0, 1, 0)
    assert real == model
    # What was written, independently of the model: 4096 zero bytes, then the old pattern.
    import hashlib

    want = bytes(4096) + fill("pattern", 4096, 4096)
    assert real.sha256 == hashlib.sha256(want).hexdigest() and real.ret == 4096
