"""The catalogue: every expectation holds, and it covers what the project promises."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from tools import GENERATORS
from tools.toml_out import is_generated, write_all

from writepath import judge, load_catalogue, run_scenario
from writepath.cli import CORRECT_DESIGNS, main
from writepath.kernel.filemap import DESIGNS
from writepath.scenario import default_catalogue

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


def test_generated_files_match_their_generators(tmp_path: Path) -> None:
    """Every file marked as generated is exactly what its generator writes today, and every
    file a generator writes is in the catalogue: scenarios/ cannot drift from tools/."""
    for module_name in GENERATORS:
        module = importlib.import_module(module_name)
        write_all(module.S, tmp_path, module.GENERATOR)
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.toml")}
    stored = {
        p.name: text
        for p in default_catalogue().glob("*.toml")
        if is_generated(text := p.read_text(encoding="utf-8"))
    }
    assert sorted(fresh) == sorted(stored)
    for name, text in fresh.items():
        assert stored[name] == text, f"scenarios/{name} differs from its generator's output"
