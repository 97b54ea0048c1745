"""ext4 -o nodelalloc (ext4_aops) on the catalogue's write-huge-length-short, and the oracle's
canary that once made the real kernel take ext4_write_begin()'s ENOSPC retry on it.

The expected traces follow fs/ext4/inode.c and mm/filemap.c of v6.18, step by step in the
comments; none is taken from the model's output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from helpers import P, scenario
from writepath import run_scenario
from writepath.oracle import child
from writepath.scenario import fill

MIB = 1 << 20


def _huge_length_short(fs: str) -> dict[str, Any]:
    """write-huge-length-short of the catalogue: a 2 GiB length from one page of data followed
    by an unmapped page, into an empty cached file."""
    return {
        "file": [{"name": "target", "fs": fs, "size": 0, "data": "zero", "cached": True}],
        "region": [
            {"name": "buf", "pages": 1, "kind": "anon", "touched": True, "data": "pattern:7"},
            {"name": "hole", "pages": 1, "kind": "hole"},
        ],
        "call": [{"op": "write", "iov": [["buf", 0, 2 * 1024 * MIB]]}],
    }


def test_nodelalloc_huge_short_write_trace() -> None:
    r = run_scenario(scenario(**_huge_length_short("ext4-nodelalloc")), "v6.18", traces=True)
    # HOW MUCH: the copy stops at the hole after one page; WHAT: that page, and nothing more.
    assert r.calls[0].ret == P
    assert r.files["target"].size == P
    assert r.files["target"].read(0, P) == fill("pattern:7", P)
    assert list(r.calls[0].trace or ()) == [
        # generic_perform_write(): chunk = mapping_max_folio_size() = 2 MiB, so bytes = 2 MiB;
        # write_begin_get_folio() asks fgf_set_order(2 MiB): one order-9 folio.
        "ext4_write_begin pos=0 len=2097152",
        "mm_filemap_add_to_page_cache file=target index=0 order=9",
        # copy_folio_from_iter_atomic() copies the first page and faults on the hole (the
        # kernel's own trace shows this fault twice: the copy and its fixup retry).
        "page_fault_kernel addr=hole+0 ip=copy_folio_from_iter_atomic error=0x0",
        "page_fault_kernel addr=hole+0 ip=copy_folio_from_iter_atomic error=0x0",
        # ext4_write_end(): block_write_end() turns a short copy into a folio that is not
        # uptodate into 0, so i_size stays 0 < pos + len and ext4_truncate_failed_write()
        # drops the folio. The space never runs out: no delete and re-add inside write_begin.
        "ext4_write_end pos=0 len=2097152 copied=4096",
        "mm_filemap_delete_from_page_cache file=target index=0 order=9",
        # Nothing written: chunk halves to 1 MiB and bytes = copied = 4096 (an order-0 folio).
        "ext4_write_begin pos=0 len=4096",
        "mm_filemap_add_to_page_cache file=target index=0 order=0",
        "ext4_write_end pos=0 len=4096 copied=4096",
        # bytes = 1 MiB - 4096 from pos 4096; index 1 is aligned to no larger order: order 0,
        # and bytes is cut to that folio before write_end.
        "ext4_write_begin pos=4096 len=1044480",
        "mm_filemap_add_to_page_cache file=target index=1 order=0",
        "page_fault_kernel addr=hole+0 ip=copy_folio_from_iter_atomic error=0x0",
        "ext4_write_end pos=4096 len=4096 copied=0",
        "mm_filemap_delete_from_page_cache file=target index=1 order=0",
        # copied == 0: fault_in_iov_iter_readable() fails on the hole; the write returns 4096.
        "page_fault_kernel addr=hole+0 ip=fault_in_readable error=0x0",
    ]


class _Statvfs:
    """What plant_canary() reads of os.statvfs(): the space available to the caller."""

    def __init__(self, available: int) -> None:
        self.f_frsize = P
        self.f_bavail = available // P


def _planted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, available: int, nbytes: int
) -> list[int]:
    """The sizes of the canary's writes on a filesystem with ``available`` bytes free."""
    sizes: list[int] = []
    real_pwrite = os.pwrite

    def counting_pwrite(fd: int, data: bytes, offset: int) -> int:
        sizes.append(len(data))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "statvfs", lambda path: _Statvfs(available))
    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    child.plant_canary(str(tmp_path), nbytes)
    return sizes


def test_canary_leaves_half_the_free_space(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 3 MiB free: at most 1.5 MiB planted, spread over the six orders (256 KiB each).
    sizes = _planted(monkeypatch, tmp_path, 3 * MIB, 64 * MIB)
    assert sum(sizes) <= 3 * MIB // 2
    assert sorted(set(sizes)) == [P << order for order in child.CANARY_ORDERS]
    for order in child.CANARY_ORDERS:
        assert sizes.count(P << order) * (P << order) == 256 * 1024


def test_canary_floor_does_not_pass_the_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 512 KiB free: the per-order floor (one 128 KiB folio's worth) would plant 768 KiB; the
    # canary stops at 256 KiB instead.
    sizes = _planted(monkeypatch, tmp_path, 512 * 1024, 64 * MIB)
    assert 0 < sum(sizes) <= 256 * 1024
    assert not list(tmp_path.iterdir())  # the canary file is gone


def test_canary_without_a_limit_plants_the_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Plenty of room: the budget (6 MiB: 1 MiB per order) is planted whole, as before.
    sizes = _planted(monkeypatch, tmp_path, 1 << 40, 6 * MIB)
    assert sum(sizes) == 6 * MIB
