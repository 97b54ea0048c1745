"""The filesystems beyond tmpfs/ramfs/ext4/xfs, and the form each write loop takes per design.

Expected values are worked out from the kernel source by hand (the arithmetic is in the
comments) or were measured on Linux 6.18 (said so where it is the case); none is read back from
the model's own output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from writepath.diff import retarget
from writepath.kernel.filemap import DESIGNS, LOOP_FORMS
from writepath.kernel.fs import filesystems
from writepath.kernel.fs.ext2 import EXT2_MAX_SIZE_4K, ext4_max_bitmap_size
from writepath.kernel.fs.shmem_huge import HPAGE_PMD_ORDER, shmem_suitable_order
from writepath.kernel.pagecache import Folio, write_ops
from writepath.mounts import FsPool, Unavailable, fs_type_of
from writepath.run import run_scenario
from writepath.scenario import Scenario, fill, parse_scenario

NEW_FILESYSTEMS = (
    "ext2",
    "ext4-nodelalloc",
    "ext4-journal",
    "btrfs",
    "fuse",
    "tmpfs-huge",
    "ext4-journal-2015",
    "orangefs",
    "orangefs-2025",
    "gfs2",
)
LOOPS = ("generic_perform_write", "iomap_write_iter", "btrfs_buffered_write", "fuse_perform_write")


def scenario(
    fs: str, regions: list[dict[str, Any]], call: dict[str, Any], size: int = 0
) -> Scenario:
    doc = {
        "name": f"t-{fs}",
        "file": [{"name": "target", "fs": fs, "size": size, "data": "pattern:3"}],
        "region": regions,
        "call": [{"file": "target", **call}],
    }
    return parse_scenario(doc)


GOOD_PAGE = {
    "name": "buf",
    "pages": 1,
    "kind": "anon",
    "prot": "rw",
    "touched": True,
    "data": "pattern:7",
}
GOOD_2PAGES = {**GOOD_PAGE, "pages": 2}
BAD_PAGE = {"name": "bad", "pages": 1, "kind": "anon", "prot": "none", "touched": False}
HOLE_PAGE = {"name": "bad", "pages": 1, "kind": "hole"}


def buf_bytes(length: int, start: int = 0) -> bytes:
    """The bytes a region with the default data holds at [start, start + length)."""
    return fill("pattern:7", length, start)


def test_every_filesystem_of_the_issue_is_a_model_filesystem() -> None:
    fss = filesystems()
    assert set(fss) == {"tmpfs", "ramfs", "ext4", "xfs", *NEW_FILESYSTEMS}
    assert all(fs.name == name for name, fs in fss.items())
    # Only tmpfs-like filesystems keep their data in the page cache alone.
    assert {name for name, fs in fss.items() if not fs.backed} == {"tmpfs", "ramfs", "tmpfs-huge"}


def test_each_design_gives_every_loop_the_form_of_its_kernel_version() -> None:
    assert set(LOOP_FORMS) == set(DESIGNS)
    for forms in LOOP_FORMS.values():
        assert set(forms) == set(LOOPS)
    # 665575cff098 (v6.14) changed only generic_perform_write(); faa794dd2e17 (v6.16) fuse.
    assert LOOP_FORMS["v6.13"] == dict.fromkeys(LOOPS, "prefault")
    assert LOOP_FORMS["v6.14"]["fuse_perform_write"] == "prefault"
    assert LOOP_FORMS["v6.16"]["fuse_perform_write"] == "copy-first"
    for merged in ("v6.13", "v6.14", "v6.16", "v6.18"):
        assert LOOP_FORMS[merged]["iomap_write_iter"] == "prefault"
        assert LOOP_FORMS[merged]["btrfs_buffered_write"] == "prefault"
    assert LOOP_FORMS["proposed"] == dict.fromkeys(LOOPS, "copy-first")
    # A broken design changes the generic loop only.
    assert LOOP_FORMS["no-fault-in"]["fuse_perform_write"] == "prefault"
    assert LOOP_FORMS["any-byte-check"]["generic_perform_write"] == "any-byte-check"


def test_ext2_size_limit_is_the_ext4_bitmap_limit() -> None:
    # Measured on Linux 6.18 (ext2 image, 4 KiB blocks, served by ext4): a pwrite at
    # 2196873666559 writes 1 byte, one at 2196873666560 fails with EFBIG.
    assert EXT2_MAX_SIZE_4K == 2196873666560
    # With huge_file the 3-level tree (12 + 1024 + 1024^2 + 1024^3 blocks) is the bound.
    assert ext4_max_bitmap_size(12, True) == (12 + 1024 + 1024**2 + 1024**3) << 12


@pytest.mark.parametrize(
    ("design", "ret", "size"), [("v6.18", "EFAULT", 0), ("proposed", 1000, 1000)]
)
def test_btrfs_prefault_fails_on_any_unreadable_byte_and_the_posting_writes_the_prefix(
    design: str, ret: int | str, size: int
) -> None:
    s = scenario(
        "btrfs",
        [GOOD_PAGE, BAD_PAGE],
        {"op": "writev", "iov": [["buf", 0, 1000], ["bad", 0, 1000]]},
    )
    r = run_scenario(s, design, keep_events=False)
    assert r.verdict == "ok"
    assert r.calls[0].as_expected() == ret
    assert r.files["target"].size == size
    assert r.files["target"].read(0, size) == buf_bytes(size)


def test_btrfs_posting_spins_on_a_partly_readable_new_page() -> None:
    # One block-aligned page, 1000 readable source bytes: the folio is not read (aligned
    # write), the short copy is reverted, the late fault-in finds part of the chunk readable.
    call = {"op": "pwrite", "iov": [["buf", 3096, 4096]], "pos": 0}
    s = scenario("btrfs", [GOOD_PAGE, BAD_PAGE], call)
    assert run_scenario(s, "v6.18", keep_events=False).calls[0].as_expected() == "EFAULT"
    assert run_scenario(s, "proposed", keep_events=False).verdict == "livelock"


def fuse_writes(s: Scenario, design: str) -> list[tuple[int, int]]:
    """The FUSE_WRITE requests (offset, size) of a model run."""
    events = run_scenario(s, design, keep_events=True).events
    starts = [e[3] for e in events if e[0] == "enter" and e[2] == "FUSE_WRITE"]
    sizes = [e[3] for e in events if e[0] == "exit" and e[2] == "FUSE_WRITE"]
    return [(int(str(a)), int(str(b))) for a, b in zip(starts, sizes, strict=True)]


READABLE_PREFIX_CALL = {"op": "pwrite", "iov": [["buf", 0, 12288]], "pos": 1000}


@pytest.mark.parametrize(
    ("design", "requests"),
    [
        # Copy first: 3096 bytes fill folio 0 to its end but not from its start, so it is not
        # uptodate and the request ends; then folio 1 whole and 1000 bytes of folio 2.
        ("v6.18", [(1000, 3096), (4096, 5096)]),
        # Prefault: the chunk of folio 2 (4096 bytes, 1000 readable) fails its prefault.
        ("v6.14", [(1000, 3096), (4096, 4096)]),
    ],
)
def test_fuse_sends_what_it_copied_in_requests_that_end_at_a_partial_folio(
    design: str, requests: list[tuple[int, int]]
) -> None:
    s = scenario("fuse", [GOOD_2PAGES, HOLE_PAGE], READABLE_PREFIX_CALL)
    assert fuse_writes(s, design) == requests
    total = sum(n for _, n in requests)
    r = run_scenario(s, design, keep_events=False)
    assert r.calls[0].ret == total
    assert r.files["target"].size == 1000 + total
    assert r.files["target"].read(1000, total) == buf_bytes(total)


@pytest.mark.parametrize(
    ("fs", "size"),
    [
        # A zero copy beyond EOF still sets i_size = pos in the ext4 write_end functions (and
        # for ext2, which runs ext4's); fuse and btrfs only move i_size for bytes written.
        ("ext2", 8192),
        ("ext4-nodelalloc", 8192),
        ("ext4-journal", 8192),
        ("tmpfs-huge", 8192),
        ("fuse", 4096),
        ("btrfs", 4096),
    ],
)
def test_failed_write_past_eof_grows_the_file_only_where_write_end_sets_i_size(
    fs: str, size: int
) -> None:
    s = scenario(fs, [BAD_PAGE], {"op": "pwrite", "iov": [["bad", 0, 100]], "pos": 8192}, 4096)
    r = run_scenario(s, "v6.18", keep_events=False)
    assert r.calls[0].as_expected() == "EFAULT"
    assert r.files["target"].size == size
    assert r.files["target"].read(0, 4096) == fill("pattern:3", 4096)


def test_tmpfs_huge_takes_a_pmd_folio_only_where_its_range_is_free() -> None:
    fs = filesystems()["tmpfs-huge"]
    from writepath.kernel.vfs import Inode

    inode = Inode(1, fs, "t")
    mapping = inode.i_mapping
    assert shmem_suitable_order(mapping, 700) == HPAGE_PMD_ORDER
    mapping.i_pages[600] = Folio(mapping, 600, 0)  # one page of [512, 1024) is cached
    assert shmem_suitable_order(mapping, 700) == 0
    assert shmem_suitable_order(mapping, 1024) == HPAGE_PMD_ORDER


# --- against the real kernel ---------------------------------------------------------------

needs_root_and_fuse = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
    reason="the fuse oracle needs root, /dev/fuse and Debian's fuse3",
)


def _daemon_writes(s: Scenario) -> tuple[Any, list[tuple[int, int]]]:
    """Run ``s`` on the real kernel's fuse mount (skip where there is none): the oracle's
    result, and the (offset, size) of every FUSE_WRITE the daemon logged for the scenario's
    file, in order."""
    from writepath.oracle import run_oracle

    with FsPool() as pool:
        try:
            pool.directory("fuse")
        except Unavailable as e:
            pytest.skip(str(e))
        log = pool.fuse_write_log()
        assert log is not None
        kernel = run_oracle(s, pool=pool)
        assert kernel.verdict == "ok", kernel.evidence
        # Only the scenario's file: the oracle's canary is written through the daemon too.
        target = f"{s.name}.{s.files[0].name}"
        with open(log) as f:
            seen = [
                (int(off), int(n))
                for path, off, n in (line.split() for line in f)
                if os.path.basename(path) == target
            ]
    return kernel, seen


@needs_root_and_fuse
@pytest.mark.parametrize(
    ("regions", "call"),
    [
        ([GOOD_2PAGES, HOLE_PAGE], READABLE_PREFIX_CALL),
        ([GOOD_PAGE, BAD_PAGE], {"op": "writev", "iov": [["buf", 0, 1000], ["bad", 0, 1000]]}),
    ],
)
def test_the_daemons_write_requests_are_the_models(
    regions: list[dict[str, Any]], call: dict[str, Any]
) -> None:
    from writepath.diff import design_for_running_kernel

    s = scenario("fuse", regions, call)
    kernel, seen = _daemon_writes(s)
    model = fuse_writes(s, design_for_running_kernel())
    assert seen == model
    assert sum(n for _, n in seen) == kernel.calls[0].ret


@needs_root_and_fuse
def test_the_pool_unmounts_fuse_and_ends_its_daemon() -> None:
    with FsPool() as pool:
        try:
            mnt = pool.directory("fuse")
        except Unavailable as e:
            pytest.skip(str(e))
        assert fs_type_of(mnt).startswith("fuse")
        daemons = list(pool._daemons)
        assert daemons and all(d.poll() is None for d in daemons)
    assert all(d.poll() is not None for d in daemons)
    mounts = subprocess.run(["cat", "/proc/self/mounts"], capture_output=True, text=True).stdout
    assert mnt not in mounts
    assert not os.path.exists(mnt)


def test_retargeting_the_catalogue_keeps_uncached_data_off_tmpfs_huge() -> None:
    s = parse_scenario(
        {
            "name": "t",
            "file": [{"name": "target", "fs": "ext4", "size": 10, "cached": False}],
            "call": [{"op": "lseek"}],
        }
    )
    assert retarget(s, "btrfs").files[0].fs == "btrfs"
    with pytest.raises(Exception, match="page cache"):
        retarget(s, "tmpfs-huge")


def test_write_ops_of_filesystems_with_and_without_write_begin() -> None:
    """iomap's and btrfs's aops leave ->write_begin/->write_end NULL, as the kernel's do; a
    write loop that calls them gets them from write_ops(), which refuses such a filesystem by
    name instead of calling a missing operation."""
    from writepath.kernel.fs.btrfs import btrfs_aops
    from writepath.kernel.fs.shmem import shmem_aops, shmem_write_begin, shmem_write_end
    from writepath.kernel.fs.xfs import xfs_aops

    assert write_ops(shmem_aops) == (shmem_write_begin, shmem_write_end)
    for a_ops in (xfs_aops, btrfs_aops):
        assert a_ops.write_begin is None and a_ops.write_end is None
        with pytest.raises(TypeError, match=a_ops.name):
            write_ops(a_ops)


# --- fuse: a partial EOF page written through FUSE stays not uptodate ------------------------
# fuse_fill_write_pages() (fs/fuse/file.c, v6.18) never reads a folio before copying into it and
# marks it uptodate only when the copy filled it whole; fuse_send_write_pages() only ever clears
# uptodate. So the setup's pwrite of a file whose size is not a page multiple leaves the last page
# cached but not uptodate, with the memory past EOF uninitialized.

PARTIAL_EOF_WRITE_CALL = {"op": "pwrite", "iov": [["buf", 0, 8192]], "pos": 1000}


def test_fuse_setup_leaves_only_the_partial_eof_page_not_uptodate() -> None:
    from writepath.run import setup

    s = scenario("fuse", [GOOD_PAGE], {"op": "lseek"}, size=4096 + 100)
    pages = setup(s, "v6.18").inodes["target"].i_mapping.i_pages
    assert sorted(pages) == [0, 1]
    assert pages[0].uptodate and pages[0].uninit == []
    assert not pages[1].uptodate
    assert pages[1].uninit == [(100, 4096)]
    assert bytes(pages[1].data[:100]) == fill("pattern:3", 100, 4096)
    # On a filesystem whose write_begin zeroes or reads the rest (ext4), the page is uptodate.
    ext4_pages = setup(scenario("ext4", [GOOD_PAGE], {"op": "lseek"}, size=4196), "v6.18")
    assert ext4_pages.inodes["target"].i_mapping.i_pages[1].uptodate


@pytest.mark.parametrize("design", ["v6.14", "v6.18"])
def test_fuse_write_into_a_partial_eof_page_ends_its_request_there(design: str) -> None:
    # Folio 0 (1000 bytes cached, not uptodate) takes 3096 bytes and, not uptodate, stays locked
    # and ends the request (ia->write.folio_locked); folio 1 is copied whole and 1000 bytes go to
    # folio 2. Had folio 0 been uptodate, all 8192 bytes would have gone in one request
    # (big_writes, the copy ends folio 0 at its end). Measured on Linux 6.18 with the project's
    # daemon: (0, 1000) for the setup, then (1000, 3096) and (4096, 5096).
    s = scenario("fuse", [{**GOOD_PAGE, "pages": 3}], PARTIAL_EOF_WRITE_CALL, size=1000)
    assert fuse_writes(s, design) == [(1000, 3096), (4096, 5096)]
    r = run_scenario(s, design, keep_events=False)
    assert r.calls[0].ret == 8192
    assert r.files["target"].size == 9192
    assert r.files["target"].read(0, 1000) == fill("pattern:3", 1000)
    assert r.files["target"].read(1000, 8192) == buf_bytes(8192)


def partial_eof_source_scenario(fs: str) -> Scenario:
    """A 100-byte cached source file mapped over two pages, written from into an empty file: the
    catalogue's src-partial-eof-page-other."""
    return parse_scenario(
        {
            "name": f"t-src-{fs}",
            "file": [
                {"name": "target", "fs": fs, "size": 0, "data": "zero"},
                {"name": "src", "fs": fs, "size": 100, "data": "pattern:4"},
            ],
            "region": [
                {
                    "name": "smap",
                    "pages": 2,
                    "kind": "file",
                    "file": "src",
                    "offset": 0,
                    "shared": True,
                    "prot": "r",
                    "touched": False,
                }
            ],
            "call": [{"file": "target", "op": "pwrite", "iov": [["smap", 0, 8192]], "pos": 0}],
        }
    )


def test_fuse_fault_on_a_not_uptodate_eof_page_reads_it_and_retries() -> None:
    # filemap_fault() (mm/filemap.c, v6.18) finds folio 0 of src cached (no readahead, no
    # mm_filemap_add_to_page_cache) but not uptodate: page_not_uptodate drops the mmap lock,
    # reads it (fuse_read_folio) and returns VM_FAULT_RETRY; the retried fault finds it
    # uptodate. Two mm_filemap_fault for index 0, as the 6.18 kernel's trace of the catalogue
    # scenario shows; on ext4 the setup left the page uptodate and the fault runs once.
    for fs, faults in (("fuse", 2), ("ext4", 1)):
        r = run_scenario(partial_eof_source_scenario(fs), "v6.18", traces=True)
        assert r.calls[0].ret == 4096
        trace = r.calls[0].trace
        assert trace is not None
        src_events = [e for e in trace if "file=src" in e]
        assert src_events[:faults] == ["mm_filemap_fault file=src index=0"] * faults
        assert not any(e.startswith("mm_filemap_add_to_page_cache") for e in src_events)
        assert sum(e.startswith("mm_filemap_fault") for e in src_events) == faults
        # What the write took: the 100 bytes, then zeros to the page end (read from the daemon's
        # file, not the folio's uninitialized tail).
        assert r.files["target"].read(0, 4096) == fill("pattern:4", 100) + bytes(3996)


def test_fuse_fault_leaves_the_eof_page_read_and_uptodate() -> None:
    from writepath.run import setup

    s = partial_eof_source_scenario("fuse")
    machine = setup(s, "v6.18")
    folio = machine.inodes["src"].i_mapping.i_pages[0]
    assert not folio.uptodate
    from writepath.kernel.fs.fuse import fuse_read_folio

    assert fuse_read_folio(machine.task, folio) == 0
    assert folio.uptodate and folio.uninit == []
    assert bytes(folio.data) == fill("pattern:4", 100) + bytes(3996)


@needs_root_and_fuse
def test_the_daemon_sees_a_write_into_a_partial_eof_page_split_as_the_model_does() -> None:
    from writepath.diff import design_for_running_kernel

    s = scenario("fuse", [{**GOOD_PAGE, "pages": 3}], PARTIAL_EOF_WRITE_CALL, size=1000)
    kernel, seen = _daemon_writes(s)
    assert seen[0] == (0, 1000)  # the setup's pwrite of the file's 1000 bytes
    assert seen[1:] == fuse_writes(s, design_for_running_kernel())
    assert kernel.calls[0].ret == 8192
