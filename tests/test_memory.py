"""Model memory grows with the bytes a scenario materializes, not with its sizes or page counts.

The fast tests look at the structures themselves (page tables, page cache, event log, file
state); the 1 GiB test measures a real process and runs only with WRITEPATH_SLOW=1.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import writepath.run
import writepath.sched
from helpers import scenario
from writepath import load_catalogue
from writepath.kernel.mm import ZERO_PAGE
from writepath.kernel.pagecache import Folio
from writepath.kernel.tracepoints import Event
from writepath.run import data_page, file_state, run_scenario, setup
from writepath.scenario import fill

P = 4096
MODEL_DESIGNS = ("v6.13", "v6.14")


@pytest.mark.parametrize("spec", ["pattern", "pattern:7", "pattern:250", "byte:0x5a", "zero"])
@pytest.mark.parametrize("start", [0, P, 251 * P, 1000 * P + 123, 2**40])
def test_data_page_is_the_spec_content_at_that_offset(spec: str, start: int) -> None:
    assert data_page(spec, start) == fill(spec, P, start)


def test_touched_anonymous_pages_share_immutable_pages() -> None:
    pages = 600
    s = scenario(
        region=[
            {"name": "buf", "pages": pages, "kind": "anon", "touched": True, "data": "pattern"}
        ],
        call=[{"op": "lseek", "pos": 0}],
    )
    machine = setup(s, "v6.14")
    refs = list(machine.task.mm.pte.values())
    assert len(refs) == pages
    # bytes cannot be written through: a store into a source page would raise TypeError.
    assert all(type(buf) is bytes and off == 0 for buf, off in refs)
    assert len({id(buf) for buf, _ in refs}) == 251  # one per phase of the pattern period
    base = machine.bases["buf"]
    for k in (0, 1, 250, 251, 599):
        buf, _ = machine.task.mm.pte[(base >> 12) + k]
        assert buf == fill("pattern", P, k * P)


def test_touched_zero_pages_map_the_zero_page() -> None:
    s = scenario(
        region=[{"name": "buf", "pages": 50, "kind": "anon", "touched": True}],
        call=[{"op": "lseek", "pos": 0}],
    )
    refs = setup(s, "v6.14").task.mm.pte.values()
    assert all(buf is ZERO_PAGE for buf, _ in refs)


def test_the_write_reads_shared_source_pages_correctly() -> None:
    """A write from shared pattern pages copies what the pattern says, all of it."""
    n = 300 * P + 77
    s = scenario(
        region=[{"name": "b", "pages": 301, "kind": "anon", "touched": True, "data": "pattern:3"}],
        call=[{"op": "pwrite", "iov": [["b", 5, n]], "pos": 11}],
    )
    r = run_scenario(s, "v6.14", keep_events=False)
    assert r.calls[0].ret == n
    assert r.files["target"].size == 11 + n
    assert r.files["target"].read(11, n) == fill("pattern:3", n, 5)


def test_sparse_file_and_untouched_region_create_no_pages() -> None:
    size = 2**30
    s = scenario(
        file=[{"name": "target", "fs": "tmpfs", "size": size, "data": "zero"}],
        region=[
            {"name": "huge", "pages": 2**18, "kind": "anon"},
            {"name": "buf", "pages": 1, "kind": "anon", "touched": True, "data": "byte:0x41"},
        ],
        call=[{"op": "pwrite", "iov": [["buf", 0, P]], "pos": size - P}],
    )
    machine = setup(s, "v6.14")
    inode = machine.inodes["target"]
    assert len(machine.task.mm.pte) == 1  # only the touched page of "buf"
    assert not inode.i_mapping.i_pages and not inode.disk
    r = run_scenario(s, "v6.14", keep_events=False)
    state = r.files["target"]
    assert r.calls[0].ret == P and state.size == size
    assert state.pages is not None and list(state.pages) == [size // P - 1]
    assert state.read(size - P, P) == b"A" * P


def test_untouched_region_as_source_maps_only_the_zero_page() -> None:
    s = scenario(
        region=[{"name": "huge", "pages": 2**18, "kind": "anon"}],
        call=[{"op": "pwrite", "iov": [["huge", 0, 4 * P]], "pos": 0}],
    )
    machine = setup(s, "v6.14")
    assert not machine.task.mm.pte
    r = run_scenario(s, "v6.14", keep_events=False)
    assert r.calls[0].ret == 4 * P and r.files["target"].size == 4 * P
    assert r.files["target"].pages == {}  # zeros are not kept


def _recording_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace run.count by a wrapper that records how many events each batch held."""
    sizes: list[int] = []
    real = writepath.run.count

    def counting(events: Iterable[Event], into: dict[str, int] | None = None) -> dict[str, int]:
        batch = list(events)
        sizes.append(len(batch))
        return real(batch, into)

    monkeypatch.setattr(writepath.run, "count", counting)
    return sizes


def test_a_long_write_keeps_a_bounded_event_log(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 8 << 20
    s = scenario(
        region=[{"name": "b", "pages": n // P, "kind": "anon", "touched": True, "data": "pattern"}],
        call=[{"op": "pwrite", "iov": [["b", 0, n]], "pos": 0}],
    )
    sizes = _recording_count(monkeypatch)
    r = run_scenario(s, "v6.14", keep_events=False)
    assert r.calls[0].ret == n and r.events == []
    assert r.counters is not None and r.counters["atomic_copies_full"] == n // P
    total = sum(sizes)
    assert total > 4 * writepath.sched.DRAIN_EVERY  # the log really was drained many times
    # A batch holds what accumulated up to the first scheduling point past DRAIN_EVERY.
    assert max(sizes) < writepath.sched.DRAIN_EVERY + 100


@pytest.mark.parametrize("drain_every", [1, 7, 4096])
def test_counters_are_the_same_with_and_without_the_log(
    monkeypatch: pytest.MonkeyPatch, drain_every: int
) -> None:
    monkeypatch.setattr(writepath.sched, "DRAIN_EVERY", drain_every)
    compared = 0
    for s in load_catalogue(None):
        for design in MODEL_DESIGNS:
            kept = run_scenario(s, design, keep_events=True)
            folded = run_scenario(s, design, keep_events=False)
            assert folded.counters == kept.counters, (s.name, design)
            assert folded.verdict == kept.verdict and folded.calls == kept.calls, s.name
            assert {n: f.digest() for n, f in folded.files.items()} == {
                n: f.digest() for n, f in kept.files.items()
            }, s.name
            assert kept.events and not folded.events
            compared += 1
    assert compared >= 100


def test_file_state_shares_folio_memory() -> None:
    s = scenario(
        region=[{"name": "b", "pages": 3, "kind": "anon", "touched": True, "data": "pattern"}],
        call=[{"op": "pwrite", "iov": [["b", 0, 3 * P]], "pos": 0}],
    )
    machine = setup(s, "v6.14")
    from writepath.sched import run_alone

    run_alone(machine.kernel, machine.task, writepath.run.syscall(machine, s.calls[0]))
    inode = machine.inodes["target"]
    state = file_state(inode)
    assert state.pages is not None and sorted(state.pages) == [0, 1, 2]
    for index, page in state.pages.items():
        assert isinstance(page, memoryview)
        assert page.obj is inode.i_mapping.i_pages[index].data  # a view, not a copy
        assert bytes(page) == fill("pattern", P, index * P)


def test_file_state_shares_disk_blocks() -> None:
    s = scenario(
        file=[{"name": "target", "fs": "ext4", "size": 4 * P, "cached": False}],
        call=[{"op": "lseek", "pos": 0}],
    )
    machine = setup(s, "v6.14")
    inode = machine.inodes["target"]
    state = file_state(inode)
    assert state.pages is not None and sorted(state.pages) == [0, 1, 2, 3]
    assert all(state.pages[i] is inode.disk[i] for i in range(4))
    assert state.read(0, 4 * P) == fill("pattern", 4 * P)


def test_file_state_zeroes_the_tail_of_a_partial_last_page() -> None:
    s = scenario(
        file=[{"name": "target", "fs": "tmpfs", "size": P + 10, "data": "byte:0x11"}],
        call=[{"op": "lseek", "pos": 0}],
    )
    inode = setup(s, "v6.14").inodes["target"]
    inode.i_mapping.i_pages[1].data[10:] = b"\x99" * (P - 10)  # bytes past EOF in the folio
    state = file_state(inode)
    assert state.pages is not None and bytes(state.pages[1]) == b"\x11" * 10 + bytes(P - 10)


GIB = 1 << 30
RSS_LIMIT = 1_500_000_000  # bytes: the target of issue 11 for a 1 GiB write

_SCENARIO_1G = """\
name = "writepath-1g-{fs}"
description = "1 GiB pwrite from a touched anonymous pattern region into an empty {fs} file"
source = "issue 11"

[[file]]
name = "target"
fs = "{fs}"
size = 0
data = "zero"

[[region]]
name = "buf"
pages = 262144
kind = "anon"
touched = true
data = "pattern:3"

[[call]]
op = "pwrite"
iov = [["buf", 0, 1073741824]]
pos = 0

[expect]
ret = [1073741824]
consistent = true
"""

_MODEL_ONLY = """\
import sys
from writepath.run import run_scenario
from writepath.scenario import load_scenario
r = run_scenario(load_scenario(sys.argv[1]), "v6.14", keep_events=False)
assert r.calls[0].ret == 1 << 30, r.calls
r.to_json()
"""


def _peak_rss(argv: list[str]) -> int:
    """Peak RSS in bytes of the command ``argv``, which must succeed.

    A fresh interpreter runs it and reports ru_maxrss of its only child (KiB on Linux), so no
    earlier child of the test process can mask the number.
    """
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return int(out.stdout)


slow = pytest.mark.skipif(
    os.environ.get("WRITEPATH_SLOW") != "1", reason="1 GiB runs: set WRITEPATH_SLOW=1"
)


@slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])
def test_a_1gib_write_fits_in_the_rss_target(tmp_path: Path, fs: str) -> None:
    path = tmp_path / f"writepath-1g-{fs}.toml"
    path.write_text(_SCENARIO_1G.format(fs=fs))
    model = _peak_rss([sys.executable, "-c", _MODEL_ONLY, str(path)])
    assert model < RSS_LIMIT, f"model run of 1 GiB on {fs}: {model / 1e9:.2f} GB"


#: Why the CLI misses the target where it does (fixes in cli.py and judge.py, not here).
_KEEPS_EVENTS = "cli.cmd_run runs with run_scenario's default keep_events=True: 262144 iterations"
_CHECK = (
    "cli.cmd_check holds the previous design's result while running the next, and "
    "judge._source_bytes builds the whole 1 GiB source before the 64 MiB cap applies"
)


@slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("command", "fs"),
    [
        pytest.param("run", "tmpfs", marks=pytest.mark.xfail(strict=True, reason=_KEEPS_EVENTS)),
        pytest.param("run", "ext4"),  # 512 folios of 2 MiB: a short log even when kept
        pytest.param("check", "tmpfs", marks=pytest.mark.xfail(strict=True, reason=_CHECK)),
        pytest.param("check", "ext4", marks=pytest.mark.xfail(strict=True, reason=_CHECK)),
    ],
)
def test_a_1gib_write_fits_in_the_rss_target_through_the_cli(
    tmp_path: Path, fs: str, command: str
) -> None:
    path = tmp_path / f"writepath-1g-{fs}.toml"
    path.write_text(_SCENARIO_1G.format(fs=fs))
    cli = [sys.executable, "-m", "writepath.cli", command, str(path)]
    rss = _peak_rss(cli)
    assert rss < RSS_LIMIT, f"{command} of 1 GiB on {fs}: {rss / 1e9:.2f} GB"


def test_a_finished_run_frees_its_page_cache_without_the_cycle_collector() -> None:
    """An inode and its mapping form a cycle; a run must not leave its folios waiting for gc
    (check runs design after design, each building a page cache of its own)."""
    s = scenario(
        region=[{"name": "b", "pages": 8, "kind": "anon", "touched": True, "data": "pattern"}],
        call=[{"op": "pwrite", "iov": [["b", 0, 8 * P]], "pos": 0}],
    )
    gc.collect()
    gc.disable()
    try:
        r = run_scenario(s, "v6.14", keep_events=False)
        alive = sum(isinstance(o, Folio) for o in gc.get_objects())
    finally:
        gc.enable()
    assert alive == 0
    assert r.files["target"].read(0, 8 * P) == fill("pattern", 8 * P)  # the state keeps its pages
