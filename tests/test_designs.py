"""The seed's story, one assertion per claim."""

from __future__ import annotations

import pytest

from helpers import P, run
from writepath import load_scenario
from writepath.run import run_scenario
from writepath.scenario import default_catalogue

SELF_MMAP = {
    "file": [{"name": "target", "fs": "tmpfs", "size": P, "data": "pattern"}],
    "region": [{"name": "map", "kind": "file", "file": "target", "prot": "r"}],
    "call": [{"op": "pwrite", "iov": [["map", 0, P]], "pos": 0}],
}


@pytest.mark.parametrize("fs", ["tmpfs", "ext4", "ramfs"])
def test_self_mmap_outcomes(fs: str) -> None:
    doc = {**SELF_MMAP, "file": [{"name": "target", "fs": fs, "size": P, "data": "pattern"}]}
    for design in ("v6.13", "v6.14"):
        r = run(doc, design)
        assert r.verdict == "ok" and r.calls[0].ret == P
    dead = run(doc, "faulting-copy")
    assert dead.verdict == "deadlock"
    assert "held by task 1" in dead.evidence and "task 1 waits" in dead.evidence
    live = run(doc, "no-fault-in")
    assert live.verdict == "livelock"
    assert live.counters is not None and live.counters["retries"] >= 2


def test_partly_readable_chunk_any_byte_check_fails_whole_chunk() -> None:
    """Source [2048, 6144) with only [2048, 4096) readable. v6.13: fault_in returns 2048 != 4096,
    so the chunk proceeds and 2048 bytes land; the any-byte check sees 2048 != 0 and returns
    EFAULT with nothing written."""
    doc = {
        "region": [
            {"name": "buf", "kind": "anon", "touched": True, "data": "pattern"},
            {"name": "bad", "kind": "anon", "prot": "none"},
        ],
        "call": [{"op": "pwrite", "iov": [["buf", 2048, P]], "pos": 0}],
    }
    pre = run(doc, "v6.13")
    assert pre.calls[0].ret == 2048 and pre.files["target"].size == 2048
    gfs2 = run(doc, "any-byte-check")
    assert gfs2.calls[0].errno == "EFAULT" and gfs2.files["target"].size == 0


@pytest.mark.parametrize("pages", [1, 3, 8])
def test_windows_per_chunk_resident_source(pages: int) -> None:
    """The seed: with a resident source, v6.14 touches user memory once per chunk (one STAC/CLAC
    pair), v6.13 twice (prefault + copy). tmpfs chunks are one page."""
    doc = {
        "region": [
            {"name": "buf", "kind": "anon", "pages": pages, "touched": True, "data": "pattern"}
        ],
        "call": [{"op": "pwrite", "iov": [["buf", 0, pages * P]], "pos": 0}],
    }
    for design, per_chunk in (("v6.14", 1), ("v6.13", 2)):
        r = run(doc, design)
        assert r.counters is not None
        assert r.counters["user_access_windows"] == per_chunk * pages
        assert r.counters["fault_in_calls"] == (pages if design == "v6.13" else 0)


def test_efault_beyond_eof_grows_file_only_after_the_patch() -> None:
    """Seen on the real 6.18 kernel (tmpfs, ext4, ramfs): a failed write at pos > EOF moves i_size
    to pos after 665575cff098, because write_end runs with copied = 0."""
    s = load_scenario(default_catalogue() / "efault-beyond-eof-grows-file.toml")
    assert run_scenario(s, "v6.13").files["target"].size == P
    assert run_scenario(s, "v6.14").files["target"].size == 2 * P


def test_forward_copy_when_source_overlaps_destination() -> None:
    """pwrite(fd, map + 0, 4095, 1) where map is the same resident page: rep movsb copies front
    to back, so every byte becomes the original byte 0 (a memmove would shift the page)."""
    doc = {
        "file": [{"name": "target", "fs": "tmpfs", "size": P, "data": "pattern"}],
        "region": [{"name": "map", "kind": "file", "file": "target", "prot": "r", "touched": True}],
        "call": [{"op": "pwrite", "iov": [["map", 0, P - 1]], "pos": 1}],
    }
    r = run(doc, "v6.14")
    assert r.calls[0].ret == P - 1
    # pattern byte 0 is 0 % 251 + 1 = 1
    assert r.files["target"].read(0, P) == b"\x01" * P
