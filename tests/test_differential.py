"""v6.13 against v6.14 on every single-task catalogue scenario.

The patch claims identical semantics, so the two designs must return the same values and leave
the same files. Every exception is a finding, listed here with the reason traced to the code."""

from __future__ import annotations

import pytest

from writepath import load_catalogue, run_scenario

_GROWS = (
    "v6.13 returns EFAULT from the prefault before ->write_begin; v6.14 reaches write_end "
    "with copied = 0, which sets i_size = pos + 0 beyond the old EOF before the late fault-in "
    "fails (kernel-code.md §1 vs §2; {}). Confirmed on the real 6.18 kernel."
)

KNOWN_DIFFERENCES = {
    "efault-beyond-eof-grows-file": _GROWS.format("shmem_write_end(), §7"),
    "efault-beyond-eof-grows-file-ext4": _GROWS.format("ext4_da_do_write_end()"),
    "efault-beyond-eof-grows-file-ramfs": _GROWS.format("simple_write_end(), §6"),
    "source-ends-at-task-size-max": _GROWS.format(
        "the source ends exactly at TASK_SIZE_MAX, so access_ok() passes and the copy, not "
        "the syscall entry, finds it unmapped; shmem_write_end()"
    ),
}

SCENARIOS = [s for s in load_catalogue() if s.single_task]


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_v6_13_and_v6_14_agree(s) -> None:  # type: ignore[no-untyped-def]
    pre = run_scenario(s, "v6.13", keep_events=False)
    post = run_scenario(s, "v6.14", keep_events=False)
    same = (
        pre.verdict == post.verdict
        and [c.as_expected() for c in pre.calls] == [c.as_expected() for c in post.calls]
        and {n: (f.size, f.digest()) for n, f in pre.files.items()}
        == {n: (f.size, f.digest()) for n, f in post.files.items()}
    )
    if s.name in KNOWN_DIFFERENCES:
        assert not same, f"{s.name} no longer differs: drop it from KNOWN_DIFFERENCES"
    else:
        assert same, f"{s.name}: v6.13 {pre.to_json()} != v6.14 {post.to_json()}"


def test_known_differences_are_in_the_catalogue() -> None:
    names = {s.name for s in SCENARIOS}
    assert set(KNOWN_DIFFERENCES) <= names
