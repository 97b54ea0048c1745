"""Filesystem bugs the short-copy path exposed (facts.md §3), each as a model-only filesystem
with its fixed form, explored under v6.13 and v6.14: which schedules reach the bug, and that the
fixed form passes every schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from writepath import run_scenario
from writepath.explorer.engine import matching_schedules, replay, short_copies
from writepath.explorer.workers import explore_bounded
from writepath.judge import judge
from writepath.kernel.bug import WARN
from writepath.kernel.fs import MODEL_ONLY, WRITE_LOOP, filesystems
from writepath.results import RunResult
from writepath.scenario import Scenario, fill, load_scenario, parse_scenario

RACE = Path(__file__).resolve().parents[1] / "scenarios" / "race"
ZEROS = bytes(4096)


def race(name: str) -> Scenario:
    return load_scenario(RACE / f"{name}.toml")


def alone(fs: str) -> Scenario:
    """One task: a page written into a new file from two untouched (non-resident) anonymous
    pages, the source starting half-way into the first."""
    doc: dict[str, Any] = {
        "name": f"alone-{fs}",
        "file": [{"name": "target", "fs": fs, "size": 0}],
        "region": [{"name": "buf", "pages": 2, "kind": "anon"}],
        "call": [{"op": "pwrite", "file": "target", "iov": [["buf", 2048, 4096]], "pos": 0}],
    }
    return parse_scenario(doc)


def warned(result: RunResult) -> list[tuple[Any, Any]]:
    return [(a, b) for kind, _pid, a, b in result.events if kind == WARN]


def violations(search: Any) -> set[str]:
    return {v["property"] for v in search.to_json()["violations"]}


def all_schedules(s: Scenario, design: str) -> list[tuple[dict[str, Any], RunResult]]:
    return matching_schedules(s, design, 2, lambda r: True)


def assert_wrote_a_page_of_zeros(result: RunResult) -> None:
    assert result.verdict == "ok"
    assert result.calls[0].ret == 4096 and result.calls[0].errno is None
    assert result.files["target"].size == 4096
    assert result.files["target"].read(0, 4096) == ZEROS


#: (bug form, fixed form, the property the bug breaks, the warnings that show it: (where, what))
BUGS = [
    (
        "ext4-journal-2015",
        "ext4-journal",
        "journalled-buffer-dirty",
        [("warn_dirty_buffer", "target: block 0 has BH_Dirty as it is journalled")],
    ),
    (
        "orangefs-2025",
        "orangefs",
        "orangefs-write-range",
        # The retry launders the range [0, 4096) the zero copy left on a file of 0 bytes: all
        # three WARN_ON()s of v6.14's writeback hold (pos >= i_size; off == i_size; the clip
        # to i_size leaves 0 bytes to send).
        [
            (
                "orangefs_writepage_locked",
                "target: write range [0, 4096) of folio 0 starts at or past i_size 0",
            ),
            (
                "orangefs_writepage_locked",
                "target: sending [0, 0) of folio 0, not inside i_size 0",
            ),
            ("orangefs_writepage_locked", "target: nothing to send from folio 0"),
        ],
    ),
]
IDS = [b[0] for b in BUGS]


def test_the_bug_forms_are_registered_as_model_only() -> None:
    fss = filesystems()
    assert {"ext4-journal-2015", "orangefs", "orangefs-2025", "gfs2"} <= MODEL_ONLY <= set(fss)
    # What each fix changed: ext4's b90197b65518 its write_end; orangefs's 219bf6edd7ef its
    # write_begin and writeback (reached through write_begin and read_folio, which launder),
    # not its write_end.
    changed = {
        "ext4-journal-2015": {"write_end"},
        "orangefs-2025": {"write_begin", "read_folio"},
    }
    for bug, fixed, *_ in BUGS:
        assert WRITE_LOOP[bug] == WRITE_LOOP[fixed] == "generic_perform_write"
        old, new = fss[bug], fss[fixed]
        for op in ("write_begin", "write_end", "read_folio"):
            same = getattr(old.a_ops, op) is getattr(new.a_ops, op)
            assert same == (op not in changed[bug]), (bug, op)
        assert (old.max_folio_order, old.backed) == (new.max_folio_order, new.backed)


@pytest.mark.parametrize(("bug", "fixed", "prop", "warnings"), BUGS, ids=IDS)
def test_v6_13_alone_never_copies_short(
    bug: str, fixed: str, prop: str, warnings: list[tuple[str, str]]
) -> None:
    """v6.13 prefaults: alone, its copy never comes back short, so the bug is not reached."""
    search = explore_bounded(alone(bug), "v6.13", 2)
    assert search.complete and search.tally.schedules == 1
    assert violations(search) == set()
    r = replay(alone(bug), "v6.13", "-").result
    assert short_copies(r) == 0 and warned(r) == []
    assert_wrote_a_page_of_zeros(r)


@pytest.mark.parametrize(("bug", "fixed", "prop", "warnings"), BUGS, ids=IDS)
def test_v6_13_needs_the_racing_dontneed(
    bug: str, fixed: str, prop: str, warnings: list[tuple[str, str]]
) -> None:
    s = race(f"race-{bug}-dontneed")
    search = explore_bounded(s, "v6.13", 2)
    assert search.complete
    assert violations(search) == {prop}
    runs = all_schedules(s, "v6.13")
    bad = [(rec, r) for rec, r in runs if warned(r)]
    assert bad and len(bad) < len(runs)
    # The default schedule (the dropper runs after the write) is clean; every bad schedule has
    # the dropper preempt the writer, and its copy came back short.
    assert all(rec["schedule"] != "-" and "dropper" in rec["schedule"] for rec, _ in bad)
    assert all(short_copies(r) > 0 for _, r in bad)
    rec, r = bad[0]
    assert rec["preemptions"] == 1
    assert warned(r) == warnings
    # What the write did is still right: the bug is the filesystem's state, not the bytes.
    assert_wrote_a_page_of_zeros(r)
    again = replay(s, "v6.13", rec["schedule"])
    # One violation per warning the bad schedule logged.
    assert [p for p, _ in again.record["violations"]] == [prop] * len(warnings)


@pytest.mark.parametrize(("bug", "fixed", "prop", "warnings"), BUGS, ids=IDS)
def test_v6_14_alone_reaches_the_bug(
    bug: str, fixed: str, prop: str, warnings: list[tuple[str, str]]
) -> None:
    search = explore_bounded(alone(bug), "v6.14", 2)
    assert violations(search) == {prop}
    r = replay(alone(bug), "v6.14", "-").result
    assert short_copies(r) == 1 and warned(r) == warnings
    assert_wrote_a_page_of_zeros(r)


@pytest.mark.parametrize(("bug", "fixed", "prop", "warnings"), BUGS, ids=IDS)
def test_v6_14_reaches_it_on_every_schedule(
    bug: str, fixed: str, prop: str, warnings: list[tuple[str, str]]
) -> None:
    runs = all_schedules(race(f"race-{bug}-dontneed"), "v6.14")
    assert len(runs) > 1 and all(warned(r) for _, r in runs)


@pytest.mark.parametrize("design", ["v6.13", "v6.14"])
@pytest.mark.parametrize("fixed", [b[1] for b in BUGS])
def test_the_fixed_form_passes_every_schedule(fixed: str, design: str) -> None:
    for s in (race(f"race-{fixed}-dontneed"), alone(fixed)):
        search = explore_bounded(s, design, 2)
        assert search.complete and violations(search) == set()
        runs = all_schedules(s, design)
        for _, r in runs:
            assert warned(r) == []
            assert_wrote_a_page_of_zeros(r)
        # Not vacuous: some schedule went down the zero-copy path the bug was on.
        assert (design == "v6.13" and s.single_task) or any(short_copies(r) for _, r in runs)


def gap_writes(fs: str) -> Scenario:
    """Two writes into one page of a new file, the second not contiguous with the first:
    100 bytes at 0, then 100 bytes at 200 (no writeback in between)."""
    doc: dict[str, Any] = {
        "name": f"gap-{fs}",
        "file": [{"name": "target", "fs": fs, "size": 0}],
        "region": [
            {"name": "buf", "pages": 1, "kind": "anon", "touched": True, "data": "pattern:7"}
        ],
        "call": [
            {"op": "pwrite", "file": "target", "iov": [["buf", 0, 100]], "pos": 0},
            {"op": "pwrite", "file": "target", "iov": [["buf", 0, 100]], "pos": 200},
        ],
    }
    return parse_scenario(doc)


@pytest.mark.parametrize("design", ["v6.13", "v6.14"])
def test_orangefs_fix_launders_the_new_range_not_the_old(design: str) -> None:
    """219bf6edd7ef's write_begin sets the range to the new write's [200, 300) before it
    launders, so laundering sends those bytes (still zeros, before the copy; they start past
    i_size 100, so whole) and drops the range [0, 100) whose bytes the server never got. Before
    the fix, laundering sent [0, 100) (inside i_size 100: no warning)."""
    fixed = explore_bounded(gap_writes("orangefs"), design, 2).to_json()["violations"]
    assert [(v["property"], v["detail"]) for v in fixed] == [
        (
            "orangefs-write-range",
            "target: byte 0 of the file would never reach the server "
            "(folio 0, write range [200, 300))",
        )
    ]
    assert violations(explore_bounded(gap_writes("orangefs-2025"), design, 2)) == set()
    for fs in ("orangefs", "orangefs-2025"):
        r = replay(gap_writes(fs), design, "-").result
        assert [c.ret for c in r.calls] == [100, 100] and warned(r) == []
        # The cache still holds both writes; only the server lost the first on the fixed form.
        assert r.files["target"].size == 300
        assert r.files["target"].read(0, 300) == fill("pattern:7", 100) + bytes(100) + fill(
            "pattern:7", 100
        )


# --- gfs2, 2021 --------------------------------------------------------------------------------

GFS2 = "gfs2-any-byte-check-partly-bad"


@pytest.mark.parametrize("design", ["v6.13", "v6.14", "any-byte-check", "no-fault-in"])
def test_gfs2_scenario_meets_its_stated_expectations(design: str) -> None:
    s = race(GFS2)
    assert judge(s, run_scenario(s, design, keep_events=False)) == []


def test_gfs2_any_byte_check_livelocks_where_tmpfs_returns_efault() -> None:
    s = race(GFS2)
    r = run_scenario(s, "any-byte-check", keep_events=True)
    assert r.verdict == "livelock" and r.calls[0].ret is None
    assert r.files["target"].size == 0
    # The spin: the write loop refuses the chunk with EFAULT, gfs2 faults the readable part in
    # and retries. should_fault_in_pages() of v5.16 makes the window the rest of the source's
    # page: the source starts 2048 bytes into its page, so 4096 - 2048 = 2048 bytes, exactly
    # the readable part, which faults in whole (0 left), so gfs2 always retries.
    loops = [b for kind, _p, a, b in r.events if kind == "exit" and a == "generic_perform_write"]
    assert len(loops) >= 2 and set(loops) == {-14}
    calls = [(kind, a, b) for kind, _p, a, b in r.events if kind in ("enter", "exit")]
    gfs2_windows = [
        (calls[k + 1][2], calls[k + 4][2])
        for k in range(len(calls) - 4)
        if calls[k][:2] == ("exit", "generic_perform_write")
        and calls[k + 1][:2] == ("enter", "fault_in_iov_iter_readable")
    ]
    assert len(gfs2_windows) >= 2 and set(gfs2_windows) == {(2048, 0)}
    tmpfs = load_scenario(
        Path(__file__).resolve().parents[1] / "scenarios" / "partly-readable-chunk.toml"
    )
    t = run_scenario(tmpfs, "any-byte-check", keep_events=False)
    assert (t.verdict, t.calls[0].ret, t.calls[0].errno) == ("ok", -1, "EFAULT")


@pytest.mark.parametrize("design", ["v6.13", "v6.14"])
def test_gfs2_writes_the_readable_part(design: str) -> None:
    r = run_scenario(race(GFS2), design, keep_events=False)
    assert r.verdict == "ok" and r.calls[0].ret == 2048
    assert r.files["target"].size == 2048
    assert r.files["target"].read(0, 2048) == fill("pattern:7", 2048, 2048)


def test_gfs2_faults_in_what_its_loop_could_not_with_faults_disabled() -> None:
    """An untouched source: the write loop, run with page faults disabled, can neither prefault
    (v6.13) nor copy; gfs2 faults the window in itself and the retry writes the readable part."""
    doc: dict[str, Any] = {
        "name": "gfs2-untouched",
        "file": [{"name": "target", "fs": "gfs2", "size": 0}],
        "region": [
            {"name": "buf", "pages": 1, "kind": "anon"},
            {"name": "bad", "pages": 1, "kind": "anon", "prot": "none"},
        ],
        "call": [{"op": "pwrite", "file": "target", "iov": [["buf", 2048, 4096]], "pos": 0}],
    }
    s = parse_scenario(doc)
    for design in ("v6.13", "v6.14"):
        r = run_scenario(s, design, keep_events=True)
        assert r.verdict == "ok" and r.calls[0].ret == 2048
        assert r.files["target"].size == 2048 and r.files["target"].read(0, 2048) == bytes(2048)
        loops = [
            b for kind, _p, a, b in r.events if kind == "exit" and a == "generic_perform_write"
        ]
        assert loops[0] == -14 and 2048 in loops


@pytest.mark.parametrize(
    ("buggy", "fixed", "where"),
    [
        ("race-ext4-journal-2015-dontneed", "race-ext4-journal-dontneed", "warn_dirty_buffer"),
        ("race-orangefs-2025-dontneed", "race-orangefs-dontneed", "orangefs_writepage_locked"),
    ],
)
def test_writepath_run_reports_the_kernel_warnings(buggy: str, fixed: str, where: str) -> None:
    """`writepath run` (one fixed schedule) shows the WARN_ONs a run fired, as dmesg would,
    beside an unchanged verdict: under v6.14 the non-resident source alone reaches them."""
    bad = run_scenario(race(buggy), "v6.14")
    assert bad.verdict == "ok" and bad.calls[0].ret == 4096
    assert bad.files["target"].size == 4096
    warnings = bad.extra["warnings"]
    assert warnings and all(w.startswith(f"{where}: target: ") for w in warnings)
    assert "kernel warnings: " in bad.evidence and "warnings" in bad.to_json()
    good = run_scenario(race(fixed), "v6.14")
    assert good.calls[0].ret == 4096 and "warnings" not in good.extra
