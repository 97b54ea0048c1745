"""The catalogue: every expectation holds, and it covers what the project promises."""

from __future__ import annotations

import pytest

from writepath import judge, load_catalogue, run_scenario
from writepath.cli import CORRECT_DESIGNS, main
from writepath.kernel.filemap import DESIGNS

CATALOGUE = load_catalogue()


def cases() -> list[tuple[str, str]]:
    out = []
    for s in CATALOGUE:
        for d in DESIGNS:
            if s.expectation(d) is not None and (d in CORRECT_DESIGNS or d in s.expect_by_design):
                out.append((s.name, d))
    return out


@pytest.mark.parametrize(("name", "design"), cases())
def test_expectation(name: str, design: str) -> None:
    s = next(x for x in CATALOGUE if x.name == name)
    r = run_scenario(s, design, keep_events=False)
    assert judge(s, r) == []


def test_catalogue_covers_region_kinds_designs_and_filesystems() -> None:
    assert len(CATALOGUE) >= 30
    kinds = {r.kind for s in CATALOGUE for r in s.regions}
    assert kinds == {"anon", "file", "hole"}
    assert {r.prot for s in CATALOGUE for r in s.regions if r.kind != "hole"} == {"r", "rw", "none"}
    assert {f.fs for s in CATALOGUE for f in s.files} >= {"tmpfs", "ramfs", "ext4", "xfs"}
    stated = {d for s in CATALOGUE for d in s.expect_by_design}
    assert stated >= {"no-fault-in", "faulting-copy", "any-byte-check"}
    assert {c.op for s in CATALOGUE for c in s.calls} == {
        "write",
        "pwrite",
        "writev",
        "pwritev",
        "lseek",
    }


def test_check_command_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    assert " 0 failed" in capsys.readouterr().out
