"""The seed's story, one assertion per claim."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from helpers import P, run, scenario
from writepath import load_scenario
from writepath.kernel.filemap import filemap_fault
from writepath.kernel.mm import VM_FAULT_RETRY, VMA
from writepath.kernel.pagecache import folio_lock, folio_unlock
from writepath.kernel.task import COND_RESCHED, Task
from writepath.kernel.vfs import VM_FAULT_LOCKED, VM_FAULT_MAJOR
from writepath.run import run_scenario, setup
from writepath.scenario import default_catalogue, fill
from writepath.sched import Runnable, Scheduler, run_alone

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


# --- The events the cost model prices (issue 9), in the order the kernel makes the calls ---

PRICED = (
    "inode_lock",
    "inode_unlock",
    "file_update_time",
    "__filemap_get_folio",
    "folio_mark_dirty",
    "balance_dirty_pages_ratelimited",
    "balance_dirty_pages_ratelimited_flags",
)


def _priced(doc: dict[str, object], design: str = "v6.18") -> list[str]:
    """The priced functions entered, in order, each checked to be exited right after (they
    call no other modelled function)."""
    r = run(doc, design)
    assert r.events is not None
    names: list[str] = []
    for k, (kind, _pid, a, _b) in enumerate(r.events):
        if kind == "enter" and a in PRICED:
            names.append(str(a))
            later = [e for e in r.events[k + 1 :] if e[0] in ("enter", "exit")]
            if a != "__filemap_get_folio":
                assert later[0][0] == "exit" and later[0][2] == a
    return names


@pytest.mark.parametrize("fs", ["tmpfs", "ramfs"])
def test_priced_events_of_a_write_in_kernel_order(fs: str) -> None:
    """shmem_file_write_iter() and generic_file_write_iter(): i_rwsem around the write, the
    timestamp update before the loop, per page one balance_dirty_pages_ratelimited() at the top
    of the pass (after the retry label, kernel-code.md §1), one lookup and one dirtying in
    write_end."""
    doc = {
        "file": [{"name": "target", "fs": fs, "size": 0, "data": "zero"}],
        "region": [{"name": "buf", "kind": "anon", "pages": 3, "touched": True, "data": "pattern"}],
        "call": [{"op": "pwrite", "iov": [["buf", 0, 3 * P]], "pos": 0}],
    }
    per_page = ["balance_dirty_pages_ratelimited", "__filemap_get_folio", "folio_mark_dirty"]
    expected = ["inode_lock", "file_update_time", *per_page * 3, "inode_unlock"]
    assert _priced(doc) == expected
    r = run(doc, "v6.18")
    assert r.calls[0].ret == 3 * P and r.files["target"].size == 3 * P


def test_priced_events_no_write_no_loop() -> None:
    """A write of nothing takes i_rwsem (generic_write_checks() returns 0 under it) and never
    reaches the timestamp update or the loop."""
    doc = {
        "region": [{"name": "buf", "kind": "anon", "pages": 1, "touched": True, "data": "pattern"}],
        "call": [{"op": "pwrite", "iov": [["buf", 0, 0]], "pos": 0}],
    }
    assert _priced(doc) == ["inode_lock", "inode_unlock"]


def test_retry_pass_balances_dirty_pages_too() -> None:
    """v6.14: a pass whose copy made no progress (source not resident) faults the source in; each
    pass begins with balance_dirty_pages_ratelimited(), as the C loop does after its label; the folio
    is dirtied only by the pass that copies."""
    doc = {
        "region": [{"name": "buf", "kind": "anon", "pages": 1}],
        "call": [{"op": "pwrite", "iov": [["buf", 0, P]], "pos": 0}],
    }
    names = _priced(doc, "v6.14")
    assert names.count("balance_dirty_pages_ratelimited") == 2
    assert names.count("__filemap_get_folio") == 2
    assert names.count("folio_mark_dirty") == 2  # shmem_write_end dirties even a zero copy


def test_filemap_fault_is_major_only_when_the_page_was_not_cached() -> None:
    """filemap_fault() returns VM_FAULT_MAJOR when it had to add the page to the page cache
    ("No page in the page cache at all"); a cached page, even one it must read, is not."""
    s = scenario(
        file=[{"name": "target", "fs": "ext4", "size": 2 * P, "data": "pattern", "cached": False}],
        call=[{"op": "lseek", "pos": 0}],
    )
    machine = setup(s, "v6.18")
    inode = machine.inodes["target"]
    vma = VMA(0, 2 * P, True, False, True, inode)
    task = machine.task
    first = run_alone(machine.kernel, task, filemap_fault(task, vma, 0)).results[task.pid]
    # Not cached: read-around reads the pages and, having dropped the mmap lock for that I/O on
    # a first try, asks for the fault to be retried; the answer is major.
    assert first == (VM_FAULT_RETRY | VM_FAULT_MAJOR, None)
    folio = inode.i_mapping.i_pages.get(0)
    assert folio is not None and folio.uptodate
    assert bytes(folio.data) == inode.disk[0]  # read from the disk
    # The retry finds it cached and uptodate: locked, and minor.
    again = run_alone(machine.kernel, task, filemap_fault(task, vma, 0)).results[task.pid]
    assert again == (VM_FAULT_LOCKED, folio)


@pytest.mark.parametrize("pages", [1, 2])
@pytest.mark.parametrize("design", ["v6.13", "v6.14"])
def test_a_fault_that_reads_the_source_from_disk_is_major_once(design: str, pages: int) -> None:
    """A source mapping an uncached ext4 file: filemap_fault() reads around and asks for a
    retry; mm_account_fault() skips the first attempt and counts the retry as major
    (FAULT_FLAG_TRIED), also when fault-around maps the page on the retry (two pages), and the
    second page is mapped by then. v6.14 takes the refused fault of its failed copy first."""
    n = pages * P
    doc = {
        "file": [
            {"name": "target", "fs": "tmpfs", "size": 0, "data": "zero"},
            {"name": "src", "fs": "ext4", "size": n, "data": "pattern:3", "cached": False},
        ],
        "region": [{"name": "buf", "kind": "file", "file": "src", "pages": pages}],
        "call": [{"op": "pwrite", "file": "target", "iov": [["buf", 0, n]], "pos": 0}],
    }
    r = run(doc, design)
    assert r.calls[0].ret == n and r.files["target"].size == n
    assert r.files["target"].read(0, n) == fill("pattern:3", n)
    assert r.events is not None
    faults = [e[3] for e in r.events if e[0] == "page_fault"]
    assert faults == (["major"] if design == "v6.13" else ["refused", "major"])


@pytest.mark.parametrize(
    ("fs", "throttle"),
    [
        ("ext4", "balance_dirty_pages_ratelimited"),
        ("ext4-journal", "balance_dirty_pages_ratelimited"),
        ("ext2", "balance_dirty_pages_ratelimited"),
        ("xfs", "balance_dirty_pages_ratelimited_flags"),
    ],
)
def test_priced_events_of_ext4_and_xfs_writes(fs: str, throttle: str) -> None:
    """ext4_buffered_write_iter() and xfs_file_buffered_write() take i_rwsem (xfs_ilock of the
    iolock is the same down_write), update the times through file_modified() in their write
    checks, and per folio the loop throttles at the top of the pass, looks the folio up and
    dirties it in write_end: one pass per new folio, counted here from the kernel tracepoint
    that adds it to the page cache."""
    doc = {
        "file": [{"name": "target", "fs": fs, "size": 0, "data": "zero"}],
        "region": [{"name": "buf", "kind": "anon", "pages": 3, "touched": True, "data": "pattern"}],
        "call": [{"op": "pwrite", "iov": [["buf", 0, 3 * P]], "pos": 0}],
    }
    r = run_scenario(scenario(**doc), "v6.18", traces=True)
    assert r.calls[0].ret == 3 * P and r.files["target"].size == 3 * P
    assert r.files["target"].read(0, 3 * P) == fill("pattern", 3 * P)
    trace = r.calls[0].trace or []
    folios = sum(1 for t in trace if t.startswith("mm_filemap_add_to_page_cache"))
    assert folios >= 1
    per_folio = [throttle, "__filemap_get_folio", "folio_mark_dirty"]
    assert _priced(doc) == ["inode_lock", "file_update_time", *per_folio * folios, "inode_unlock"]


class _SwitchAtEveryPoint:
    """A policy that runs another task at every scheduling point where one can run."""

    def choose(self, alternatives: Sequence[Runnable], preemption: bool, point: str) -> int:
        return 1 if preemption and len(alternatives) > 1 else 0


def test_filemap_fault_retries_after_sleeping_for_a_contended_folio_lock() -> None:
    """lock_folio_maybe_drop_mmap() (mm/filemap.c, v6.18): when another task holds the folio
    lock, a first try drops the mmap lock before sleeping for it and the fault answers
    VM_FAULT_RETRY (folio unlocked); the retry (FAULT_FLAG_TRIED) finds the folio free and
    returns it locked. Without the contention the first try returns it locked at once."""
    s = scenario(
        file=[{"name": "target", "fs": "ext4", "size": P, "data": "pattern", "cached": True}],
        call=[{"op": "lseek", "pos": 0}],
    )
    machine = setup(s, "v6.18")
    inode = machine.inodes["target"]
    folio = inode.i_mapping.i_pages.get(0)
    assert folio is not None and folio.uptodate
    vma = VMA(0, P, True, False, True, inode)
    main = machine.task
    holder = Task(machine.kernel, main.pid + 1, main.mm, "holder")

    def hold() -> Iterator[object]:
        yield from folio_lock(holder, folio)
        yield COND_RESCHED  # the faulting task runs while the lock is held
        folio_unlock(holder, folio)

    sched = Scheduler(machine.kernel, _SwitchAtEveryPoint())
    sched.spawn(holder, hold())
    sched.spawn(main, filemap_fault(main, vma, 0))
    outcome = sched.run()
    assert outcome.results[main.pid] == (VM_FAULT_RETRY, None)
    assert folio.owner is None
    main.mm.fault_tried.add(main.pid)
    again = run_alone(machine.kernel, main, filemap_fault(main, vma, 0)).results[main.pid]
    assert again == (VM_FAULT_LOCKED, folio)
    folio_unlock(main, folio)
    main.mm.fault_tried.discard(main.pid)
    first = run_alone(machine.kernel, main, filemap_fault(main, vma, 0)).results[main.pid]
    assert first == (VM_FAULT_LOCKED, folio)
