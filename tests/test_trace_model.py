"""The model's tracepoints against traces the real 6.18 kernel gave for the same calls.

Expected traces were recorded on the real kernel (tracefs, `writepath oracle --json`), or are
the hand-checked trace of issue 7; none is taken from the model's own output.
"""

from __future__ import annotations

from pathlib import Path

from helpers import scenario
from writepath.diff import retarget
from writepath.layout import MODEL_BASE, region_bases
from writepath.oracle.tracing import superblock_dev
from writepath.run import run_scenario
from writepath.scenario import Scenario, default_catalogue, load_scenario
from writepath.trace import function_graph, model_call_traces
from writepath.tracecmp import first_trace_difference


def find_scenario(name: str) -> str:
    return str(default_catalogue() / f"{name}.toml")


def _new_file_from_untouched_anon() -> Scenario:
    return scenario(
        file=[{"name": "target", "fs": "ext4", "size": 0}],
        region=[{"name": "buf", "pages": 2, "kind": "anon", "touched": False}],
        call=[{"op": "pwrite", "iov": [["buf", 0, 8192]], "pos": 0}],
    )


def _traces(s: Scenario) -> list[tuple[str, ...]]:
    r = run_scenario(s, "v6.14")
    bases = region_bases(s.regions, MODEL_BASE)
    regions = [(g.name, bases[g.name], bases[g.name] + g.length) for g in s.regions]
    return model_call_traces(r.events, regions)


def test_ext4_copies_first_and_faults_in_after_a_failed_copy() -> None:
    """Issue 7's hand-checked trace: 665575cff098 caught in the act on ext4."""
    assert _traces(_new_file_from_untouched_anon()) == [
        (
            "ext4_da_write_begin pos=0 len=8192",
            "mm_filemap_add_to_page_cache file=target index=0 order=1",
            "page_fault_kernel addr=buf+0 ip=copy_folio_from_iter_atomic error=0x0",
            "ext4_da_write_end pos=0 len=8192 copied=0",
            "page_fault_kernel addr=buf+0 ip=fault_in_readable error=0x0",
            "page_fault_kernel addr=buf+4096 ip=fault_in_readable error=0x0",
            "ext4_da_write_begin pos=0 len=8192",
            "ext4_da_write_end pos=0 len=8192 copied=8192",
        )
    ]


def test_xfs_prefaults_walks_its_mapping_and_drops_the_refused_folio() -> None:
    """partly-readable-chunk on xfs, as 6.18 traced it: two faults in one atomic copy, the folio
    beyond EOF deleted after write_end refused the short copy, the retry, and the last
    iomap_iter carrying the EFAULT of the next chunk."""
    s = retarget(load_scenario(find_scenario("partly-readable-chunk")), "xfs")
    assert _traces(s) == [
        (
            "iomap_iter pos=0 length=0 status=0 flags=WRITE",
            "page_fault_kernel addr=bad+0 ip=fault_in_readable error=0x0",
            "mm_filemap_add_to_page_cache file=target index=0 order=0",
            "page_fault_kernel addr=bad+0 ip=copy_folio_from_iter_atomic error=0x0",
            "page_fault_kernel addr=bad+0 ip=copy_folio_from_iter_atomic error=0x0",
            "mm_filemap_delete_from_page_cache file=target index=0 order=0",
            "mm_filemap_add_to_page_cache file=target index=0 order=0",
            "page_fault_kernel addr=bad+0 ip=fault_in_readable error=0x0",
            "iomap_iter pos=2048 length=2048 status=0 flags=WRITE",
            "page_fault_kernel addr=bad+0 ip=fault_in_readable error=0x0",
            "iomap_iter pos=2048 length=2048 status=-14 flags=WRITE",
        )
    ]


def test_xfs_zeroes_up_to_a_write_beyond_eof_before_writing() -> None:
    """extend-at-10000 on xfs (6.18): IOMAP_ZERO over the hole from EOF, then the write."""
    s = retarget(load_scenario(find_scenario("extend-at-10000")), "xfs")
    assert tuple(e for e in _traces(s)[-1] if e.startswith("iomap_iter")) == (
        "iomap_iter pos=4096 length=5904 status=0 flags=ZERO",
        "iomap_iter pos=10000 length=0 status=0 flags=ZERO",
        "iomap_iter pos=10000 length=3000 status=0 flags=WRITE",
        "iomap_iter pos=13000 length=0 status=0 flags=WRITE",
    )


def test_tracepoints_show_inline_in_the_function_graph() -> None:
    graph = function_graph(run_scenario(_new_file_from_untouched_anon(), "v6.14").events)
    assert "/* ext4_da_write_end pos=0 len=8192 copied=0 */" in graph


def test_first_trace_difference_points_at_the_event_with_context() -> None:
    kernel = [("a", "b", "c", "d", "e")]
    assert first_trace_difference([("a", "b", "c", "d", "e")], kernel) is None
    d = first_trace_difference([("a", "b", "x", "d")], kernel)
    assert d is not None
    assert d.splitlines()[0] == "call[0] trace differs at event 2:"
    assert ">   2 x" in d and ">   2 c" in d and "    0 a" in d and "    4 e" in d
    short = first_trace_difference([("a", "b")], kernel)
    assert short is not None and "(end of trace)" in short
    assert first_trace_difference([(), ()], [("a",)]) is not None
    assert first_trace_difference([None], kernel) is None  # no trace taken: not compared


# -- The fault path: fault-around, finish_fault, read-around (kernel traces of 6.18) -----------


def test_fault_around_maps_its_window_clamped_to_the_vma() -> None:
    """trace-fault-around-vma-clipped (tmpfs, 6.18): the 64 KiB window around file page 2 is
    cut to the 4 pages the VMA maps, file pages 1 to 4; the faulting page is among them, so
    ->fault is not called."""
    s = load_scenario(find_scenario("trace-fault-around-vma-clipped"))
    assert _traces(s) == [
        (
            "page_fault_kernel addr=map+4096 ip=copy_folio_from_iter_atomic error=0x0",
            "page_fault_kernel addr=map+4096 ip=fault_in_readable error=0x0",
            "mm_filemap_map_pages file=src start=1 end=4",
        )
    ]


def test_fault_around_maps_the_next_pages_so_the_retried_copy_does_not_fault() -> None:
    """self-map-at on tmpfs (6.18): one fault maps the whole 4-page file, so the copy of the
    second page does not fault again."""
    s = load_scenario(find_scenario("self-map-at"))
    assert _traces(s) == [
        (
            "page_fault_kernel addr=map+0 ip=copy_folio_from_iter_atomic error=0x0",
            "page_fault_kernel addr=map+0 ip=fault_in_readable error=0x0",
            "mm_filemap_map_pages file=target start=0 end=3",
        )
    ]


def test_ext4_folio_ending_at_eof_is_mapped_whole_by_the_fault_not_by_fault_around() -> None:
    """self-map-at on ext4 (6.18): the file's one 16 KiB folio ends at EOF, so fault-around
    installs no page table and maps nothing (no tracepoint); filemap_fault() then returns the
    folio and finish_fault() maps all of it: the fault-in of the second page does not fault."""
    s = retarget(load_scenario(find_scenario("self-map-at")), "ext4")
    assert _traces(s) == [
        (
            "ext4_da_write_begin pos=0 len=8192",
            "page_fault_kernel addr=map+0 ip=copy_folio_from_iter_atomic error=0x0",
            "ext4_da_write_end pos=0 len=8192 copied=0",
            "page_fault_kernel addr=map+0 ip=fault_in_readable error=0x0",
            "mm_filemap_fault file=target index=0",
            "ext4_da_write_begin pos=0 len=8192",
            "ext4_da_write_end pos=0 len=8192 copied=8192",
        )
    ]


def test_xfs_mmap_fault_reads_around_in_order_0_folios_then_retries() -> None:
    """trace-mmap-readaround (xfs, 6.18): read-around of pages 0-23 (clipped at EOF), all
    added before the read walks them with iomap_iter (no flags), then the retried fault's
    fault-around over the 16-page window."""
    s = load_scenario(find_scenario("trace-mmap-readaround"))
    assert _traces(s) == [
        (
            "iomap_iter pos=0 length=0 status=0 flags=WRITE",
            "page_fault_kernel addr=map+32768 ip=fault_in_readable error=0x0",
            "mm_filemap_fault file=src index=8",
            *(f"mm_filemap_add_to_page_cache file=src index={i} order=0" for i in range(24)),
            "iomap_iter pos=0 length=0 status=0 flags=",
            "iomap_iter pos=98304 length=0 status=0 flags=",
            "mm_filemap_map_pages file=src start=0 end=15",
            "mm_filemap_add_to_page_cache file=target index=0 order=0",
            "iomap_iter pos=4096 length=0 status=0 flags=WRITE",
        )
    ]


def test_null_iovec_base_faults_only_in_the_copy() -> None:
    """ltp-writev05-null-base (tmpfs, 6.18): fault_in_readable() stops at address 0 without
    touching it, so the only fault is the atomic copy's."""
    s = load_scenario(find_scenario("ltp-writev05-null-base"))
    assert _traces(s) == [
        ("page_fault_kernel addr=null+0 ip=copy_folio_from_iter_atomic error=0x0",)
    ]


def test_xfs_short_write_keeps_delalloc_only_under_dirty_blocks() -> None:
    """stale-xfs-mid-folio (6.18): after 100 bytes at 1000 the blocks of the 16 KiB folio that
    hold no dirty data lose their reservation, so the next mapping ends with block 0."""
    s = load_scenario(find_scenario("stale-xfs-mid-folio"))
    assert _traces(s)[0][-3:] == (
        "iomap_iter pos=1100 length=16284 status=0 flags=WRITE",
        "page_fault_kernel addr=bad+0 ip=fault_in_readable error=0x0",
        "iomap_iter pos=1100 length=2996 status=-14 flags=WRITE",
    )


def test_xfs_new_delalloc_reservation_maps_at_most_1024_pages() -> None:
    """write-huge-length-short (xfs, 6.18): the mappings of a huge write are 4 MiB long."""
    s = retarget(load_scenario(find_scenario("write-huge-length-short")), "xfs")
    iters = [e for e in _traces(s)[0] if e.startswith("iomap_iter")]
    assert iters == [
        "iomap_iter pos=0 length=0 status=0 flags=WRITE",
        "iomap_iter pos=4096 length=4190208 status=0 flags=WRITE",
        "iomap_iter pos=4096 length=4194304 status=-14 flags=WRITE",
    ]


def test_superblock_dev_is_the_mount_device_not_stat_dev(tmp_path: Path) -> None:
    """btrfs: stat() reports the subvolume's anonymous device (0:41 here) while tracepoints
    print the superblock's (mountinfo's 0:40); the innermost mount holding the path wins, and
    escaped mount points are unescaped."""
    inner = tmp_path / "a b"
    inner.mkdir()
    target = inner / "f"
    target.write_bytes(b"")
    mountinfo = tmp_path / "mountinfo"
    escaped = str(inner).replace(" ", "\\040")
    mountinfo.write_text(
        "22 1 254:0 / / rw,relatime - ext4 /dev/root rw\n"
        f"133 111 0:40 / {escaped} rw,relatime - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n"
    )
    assert superblock_dev(str(target), str(mountinfo)) == (0, 40)
    assert superblock_dev(str(tmp_path), str(mountinfo)) == (254, 0)


def test_pmd_sized_folio_is_mapped_whole_without_the_fault_around_tracepoint() -> None:
    """trace-fault-around-pmd (tmpfs huge=always, 6.18): filemap_map_pmd() maps the 2 MiB
    folio with one PMD entry and returns before mm_filemap_map_pages fires."""
    s = load_scenario(find_scenario("trace-fault-around-pmd"))
    assert _traces(s) == [
        (),
        (
            "page_fault_kernel addr=map+8192 ip=copy_folio_from_iter_atomic error=0x0",
            "page_fault_kernel addr=map+8192 ip=fault_in_readable error=0x0",
        ),
    ]
