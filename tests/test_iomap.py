"""fs/iomap/buffered-io.c (v6.18) in the model: per-block state and its users, the loop forms
of each design, and the per-call reset of the no-progress detector."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import P, run
from writepath.kernel.filemap import DESIGNS, IOMAP_LOOP
from writepath.kernel.fs import filesystems
from writepath.kernel.fs.iomap import (
    IomapFolioState,
    __iomap_write_begin,
    __iomap_write_end,
    ifs_alloc,
    iomap_adjust_read_range,
)
from writepath.kernel.kernel import Kernel
from writepath.kernel.mm import MM
from writepath.kernel.pagecache import Folio, filemap_add_folio, filemap_alloc_folio
from writepath.kernel.task import Task
from writepath.kernel.vfs import Inode


def xfs_inode(size: int) -> tuple[Task, Inode]:
    kernel = Kernel("v6.14", DESIGNS["v6.14"])
    task = Task(kernel, 1, MM())
    inode = Inode(1, filesystems()["xfs"], "f")
    inode.i_size = size
    return task, inode


def new_folio(task: Task, inode: Inode, index: int, order: int) -> Folio:
    folio = filemap_alloc_folio(inode.i_mapping, index, order)
    assert filemap_add_folio(task, inode.i_mapping, folio) == 0
    return folio


def test_ifs_only_for_folios_of_more_than_one_block() -> None:
    task, inode = xfs_inode(1 << 20)
    assert ifs_alloc(new_folio(task, inode, 0, 0)) is None
    ifs = ifs_alloc(new_folio(task, inode, 4, 2))
    assert isinstance(ifs, IomapFolioState)
    assert ifs.uptodate == [False] * 4 and ifs.dirty == [False] * 4


def test_adjust_read_range_skips_leading_and_cuts_at_trailing_uptodate_blocks() -> None:
    task, inode = xfs_inode(1 << 20)
    folio = new_folio(task, inode, 0, 2)
    ifs = ifs_alloc(folio)
    assert ifs is not None
    ifs.uptodate[:] = [True, False, False, True]
    assert iomap_adjust_read_range(inode, folio, 0, 4 * P) == (P, P, 2 * P)


def test_adjust_read_range_stops_at_the_eof_block() -> None:
    task, inode = xfs_inode(P + 10)
    folio = new_folio(task, inode, 0, 2)
    ifs_alloc(folio)
    assert iomap_adjust_read_range(inode, folio, 0, 4 * P) == (0, 0, 2 * P)


def test_write_begin_marks_the_zeroed_range_uptodate_but_leaves_the_write_range_raw() -> None:
    task, inode = xfs_inode(1 << 20)
    folio = new_folio(task, inode, 0, 2)
    assert __iomap_write_begin(task, inode, 1000, 4 * P - 1000, folio) == 0
    # Only [0, 1000) was written (zeroed), yet every block, so the folio, is uptodate.
    assert folio.uptodate
    assert folio.uninit == [(1000, 4 * P)]


def test_write_begin_of_a_whole_folio_does_nothing() -> None:
    task, inode = xfs_inode(1 << 20)
    folio = new_folio(task, inode, 4, 2)
    assert __iomap_write_begin(task, inode, 4 * P, 4 * P, folio) == 0
    assert not folio.uptodate and folio.private is None


def test_write_begin_reads_a_partly_covered_block_with_data() -> None:
    task, inode = xfs_inode(2 * P)
    inode.disk[0] = b"\x07" * P
    folio = new_folio(task, inode, 0, 0)
    __iomap_write_begin(task, inode, 100, 50, folio)
    assert folio.uptodate and folio.uninit == []
    assert folio.data[:100] == b"\x07" * 100


def test_write_end_refuses_a_short_copy_only_into_a_folio_not_uptodate() -> None:
    task, inode = xfs_inode(1 << 20)
    folio = new_folio(task, inode, 0, 2)
    assert not __iomap_write_end(task, 0, 4 * P, 10, folio)
    folio.uptodate = True
    assert __iomap_write_end(task, 0, 4 * P, 10, folio)
    assert folio.dirty


def test_every_design_has_an_iomap_loop_form() -> None:
    assert set(IOMAP_LOOP) == set(DESIGNS)
    assert {d for d, form in IOMAP_LOOP.items() if form == "copy-first"} == {"proposed"}


def hole_then_untouched(fs: str) -> dict[str, Any]:
    return {
        "file": [{"name": "target", "fs": fs, "size": 0, "data": "zero"}],
        "region": [
            {"name": "hole", "pages": 1, "kind": "hole"},
            {"name": "fresh", "pages": 1, "kind": "anon", "prot": "rw", "touched": False},
        ],
        "call": [
            {"op": "pwrite", "iov": [["hole", 0, P]], "pos": 0},
            {"op": "pwrite", "iov": [["fresh", 0, P]], "pos": 0},
        ],
    }


@pytest.mark.parametrize("fs", ["tmpfs", "ramfs", "ext4", "xfs"])
@pytest.mark.parametrize("design", ["v6.13", "v6.14", "proposed"])
def test_efault_then_untouched_source_is_not_a_livelock(fs: str, design: str) -> None:
    # The kernel returns EFAULT, then writes the page of zeros (the report).
    result = run(hole_then_untouched(fs), design)
    assert result.verdict == "ok"
    assert [c.as_expected() for c in result.calls] == ["EFAULT", P]
    assert result.files["target"].size == P
    assert result.files["target"].read(0, P) == bytes(P)
