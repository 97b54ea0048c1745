"""The cost model: profiles refuse what they cannot source, pricing follows the events, the
calibration never sees the row it predicts, and the JSON has the shape issue 9 gives."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from writepath.cost import calibrate as cal
from writepath.cost.price import tally
from writepath.cost.profile import COST_UNITS, ProfileError, load_profiles, parse_profile
from writepath.cost.report import issue_json, workload_tallies, zeroday_report
from writepath.cost.sweep import sweep_point, sweep_scenario
from writepath.cost.workload import WorkloadError, load_workloads, parse_workload
from writepath.kernel import tracepoints as tp
from writepath.run import run_scenario

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
WORKLOADS = ROOT / "workloads"


@pytest.fixture(scope="module")
def profiles() -> dict[str, Any]:
    return load_profiles(PROFILES)


@pytest.fixture(scope="module")
def workloads() -> dict[str, Any]:
    return load_workloads(WORKLOADS)


@pytest.fixture(scope="module")
def tallies(workloads: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return workload_tallies(w for w in workloads.values() if w.measurements)


def _doc(name: str) -> dict[str, Any]:
    return tomllib.loads((PROFILES / name).read_text())


# --- profiles: every number sourced ------------------------------------------------------------

BAD_PROFILES = [
    ("no source", lambda d: d["cost"]["syscall"].pop("source"), "cost.syscall.source"),
    ("empty source", lambda d: d["cost"]["syscall"].update(source=" "), "cost.syscall.source"),
    ("clock unsourced", lambda d: d["clock"].pop("source"), "clock.source"),
    ("wrong unit", lambda d: d["cost"]["copy_byte"].update(unit="cycles"), "cost.copy_byte.unit"),
    ("negative", lambda d: d["cost"]["retry"].update(value=-1), "cost.retry.value"),
    (
        "unknown cost",
        lambda d: d["cost"].update(teleport={"value": 1, "unit": "cycles", "source": "x"}),
        "cost.teleport",
    ),
    ("missing cost", lambda d: d["cost"].pop("retry"), "cost.retry"),
    ("no smap", lambda d: d.pop("smap"), "smap"),
]


@pytest.mark.parametrize(("why", "edit", "field"), BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_a_profile_without_a_source_or_with_a_bad_number_is_refused(why, edit, field) -> None:
    doc = _doc("amd-epyc-this-machine.toml")
    edit(doc)
    with pytest.raises(ProfileError) as e:
        parse_profile(doc, "p.toml")
    assert e.value.field == field


def test_every_shipped_profile_cites_a_source_for_every_number(profiles) -> None:
    assert {
        "amd-epyc-this-machine",
        "icl-xeon-gold-6346",
        "gnr-xeon-6972p",
        "skl-xeon-104t",
        "no-smap",
    } <= set(profiles)
    for p in profiles.values():
        assert set(p.costs) == set(COST_UNITS)
        assert p.clock.source.strip() and p.smap_source.strip()
        for name, q in p.costs.items():
            assert q.source.strip(), (p.name, name)
            assert q.unit == COST_UNITS[name]


def test_a_profile_based_on_an_unknown_one_is_refused() -> None:
    doc = _doc("gnr-xeon-6972p.toml")
    with pytest.raises(ProfileError, match="based_on"):
        parse_profile(doc, "g.toml", {})


# --- pricing ---------------------------------------------------------------------------------


def test_without_smap_both_designs_pay_nothing_for_windows(profiles, workloads, tallies) -> None:
    nosmap = profiles["no-smap"]
    w = workloads["will-it-scale.pwrite1"]
    from writepath.cost.price import price

    v13 = price(tallies[(w.name, "v6.13")].total, nosmap)
    v14 = price(tallies[(w.name, "v6.14")].total, nosmap)
    assert v13.get("uaccess_window", 0.0) == v14.get("uaccess_window", 0.0) == 0.0
    # With SMAP, v6.13 pays one window more than v6.14: the prefault's.
    smap = profiles["amd-epyc-this-machine"]
    a = price(tallies[(w.name, "v6.13")].total, smap)["uaccess_window"]
    b = price(tallies[(w.name, "v6.14")].total, smap)["uaccess_window"]
    assert a == pytest.approx(2 * b)


def test_tally_counts_what_the_events_say() -> None:
    events: list[tp.Event] = [
        (tp.ENTER, 1, "ksys_pwrite64", 8192),
        (tp.ENTER, 1, "inode_lock", 7),
        (tp.EXIT, 1, "inode_lock", None),
        (tp.ENTER, 1, "file_update_time", 7),
        (tp.EXIT, 1, "file_update_time", 0),
        (tp.ENTER, 1, "generic_perform_write", 8192),
        (tp.ENTER, 1, "fault_in_iov_iter_readable", 8192),
        (tp.ENTER, 1, "fault_in_readable", 8192),
        (tp.STAC, 1, 0x1000 + 100, 8192),  # spans three pages
        (tp.PAGE_FAULT, 1, 0x2000, tp.FAULT_ZERO_PAGE),
        (tp.CLAC, 1, None, None),
        (tp.EXIT, 1, "fault_in_readable", 0),
        (tp.EXIT, 1, "fault_in_iov_iter_readable", 0),
        (tp.ENTER, 1, "shmem_write_begin", 0),
        (tp.ENTER, 1, "__filemap_get_folio", 0),
        (tp.FOLIO_LOCK, 1, 0, 1),
        (tp.EXIT, 1, "__filemap_get_folio", 0),
        (tp.EXIT, 1, "shmem_write_begin", 0),
        (tp.STAC, 1, 0x1000 + 100, 4096),
        (tp.PAGE_FAULT, 1, 0x2000, tp.FAULT_REFUSED),
        (tp.CLAC, 1, None, None),
        (tp.COPY, 1, 4096, 1000),
        (tp.ENTER, 1, "shmem_write_end", 1000),
        (tp.ENTER, 1, "folio_mark_dirty", 0),
        (tp.EXIT, 1, "folio_mark_dirty", True),
        (tp.FOLIO_UNLOCK, 1, 0, 1),
        (tp.EXIT, 1, "shmem_write_end", 1000),
        (tp.ENTER, 1, "balance_dirty_pages_ratelimited", 7),
        (tp.ENTER, 1, "balance_dirty_pages_ratelimited_flags", 0),
        (tp.EXIT, 1, "balance_dirty_pages_ratelimited_flags", 0),
        (tp.EXIT, 1, "balance_dirty_pages_ratelimited", None),
        (tp.RETRY, 1, 0, 4096),
        # A page fault's own page-cache lookup is inside the fault's cost, not a lookup.
        (tp.ENTER, 1, "__filemap_get_folio", 3),
        (tp.EXIT, 1, "__filemap_get_folio", None),
        (tp.ENTER, 1, "inode_unlock", 7),
        (tp.EXIT, 1, "inode_unlock", None),
    ]
    t = tally(events)
    assert t.total["syscall"] == 1 and t.total["i_rwsem"] == 1  # the lock, not the unlock
    assert t.total["uaccess_window"] == 2
    assert t.total["fault_in_touch"] == 3
    assert t.total["fault_zero_page"] == 1 and t.total["fault_refused"] == 1
    assert t.total["copy_byte"] == 1000 and t.total["failed_copy"] == 1
    assert t.total["folio_mark_dirty"] == 1 and t.total["retry"] == 1
    assert t.total["balance_dirty_pages_ratelimited"] == 1  # the _flags call is inside it
    assert t.total["page_cache_lookup"] == 1 and t.total["file_update_time"] == 1
    assert t.fault_in["uaccess_window"] == 1 and t.fault_in["fault_zero_page"] == 1
    assert t.fault_in["fault_refused"] == 0


def test_costs_without_an_event_of_their_own_are_not_derived() -> None:
    # A write loop whose log has no inode_lock, file_update_time, __filemap_get_folio,
    # folio_mark_dirty or balance_dirty_pages_ratelimited pays none of them: only write_iter
    # (the VFS checks) is still derived from the loop's entry.
    events: list[tp.Event] = [
        (tp.ENTER, 1, "ksys_write", 10),
        (tp.ENTER, 1, "generic_perform_write", 10),
        (tp.ENTER, 1, "simple_write_begin", 0),
        (tp.EXIT, 1, "simple_write_begin", 0),
        (tp.ENTER, 1, "simple_write_end", 10),
        (tp.EXIT, 1, "simple_write_end", 10),
        (tp.EXIT, 1, "generic_perform_write", 10),
        (tp.EXIT, 1, "ksys_write", 10),
    ]
    t = tally(events).total
    assert t["write_iter"] == 1 and t["write_begin"] == 1 and t["write_end"] == 1
    for name in (
        "i_rwsem",
        "file_update_time",
        "page_cache_lookup",
        "folio_mark_dirty",
        "balance_dirty_pages_ratelimited",
    ):
        assert t[name] == 0, name


def test_an_untouched_source_costs_v6_14_a_refused_fault_and_a_retry() -> None:
    q13 = sweep_point(("untouched-anon", 4096, "v6.13"))
    q14 = sweep_point(("untouched-anon", 4096, "v6.14"))
    assert q13["fault_zero_page"] == q14["fault_zero_page"] == 1
    assert q13.get("fault_refused", 0) == 0 and q14["fault_refused"] == 1
    assert q14["retry"] == 1 and q13.get("retry", 0) == 0
    assert q13["copy_byte"] == q14["copy_byte"] == 4096


def test_partly_resident_source_writes_everything() -> None:
    s = sweep_scenario("partly-resident", 4 * 4096)
    r = run_scenario(s, "v6.14")
    assert r.calls[0].ret == 4 * 4096
    assert r.files["target"].read(0, 4096) != bytes(4096)  # the touched half's pattern arrived


# --- calibration -----------------------------------------------------------------------------


def test_calibration_never_reads_a_gain(profiles, workloads, tallies) -> None:
    rows = cal.all_rows(workloads)
    fits = cal.calibrate(profiles, rows, tallies)
    from dataclasses import replace

    changed = [replace(r, change_pct=r.change_pct + 50, patched=None) for r in rows]
    fits2 = cal.calibrate(profiles, changed, tallies)
    for name in profiles:
        assert fits[name].path_scale == fits2[name].path_scale
        assert fits[name].window == fits2[name].window


def test_predictions_never_read_a_gain(profiles, workloads, tallies) -> None:
    from dataclasses import replace

    # Every measured gain and patched rate replaced by nonsense: not one prediction moves.
    doctored = {
        name: replace(
            w,
            measurements=tuple(
                replace(m, change_pct=m.change_pct - 40, patched=1.0) for m in w.measurements
            ),
        )
        for name, w in workloads.items()
    }
    real = cal.zeroday(profiles, workloads, tallies)
    fake = cal.zeroday(profiles, doctored, tallies)
    for a, b in zip(real, fake, strict=True):
        assert a.prediction.change_pct == b.prediction.change_pct
        assert a.held_out.change_pct == b.held_out.change_pct
        assert a.held_out_strict.change_pct == b.held_out_strict.change_pct
        assert b.error_pp == pytest.approx(a.error_pp + 40)


def test_a_prediction_from_a_measured_base_keeps_the_models_difference(
    profiles, workloads, tallies
) -> None:
    w = workloads["will-it-scale.pwrite1"]
    p = profiles["icl-xeon-gold-6346"]
    model = cal.predict(w, p, tallies)
    based = cal.predict(w, p, tallies, base_cycles=5000.0)
    assert based.cycles_per_op["v6.13"] == 5000.0
    saved = model.cycles_per_op["v6.13"] - model.cycles_per_op["v6.14"]
    assert saved > 0
    assert based.cycles_per_op["v6.14"] == pytest.approx(5000.0 - saved)
    assert based.ops_per_s["v6.13"] == pytest.approx(p.hz / 5000.0)


def test_held_out_calibration_never_sees_the_row_it_predicts(
    profiles, workloads, tallies, monkeypatch
) -> None:
    seen: list[set[str]] = []
    real = cal.calibrate

    def spy(p, rows, t):
        rows = list(rows)
        seen.append({r.id for r in rows})
        return real(p, rows, t)

    monkeypatch.setattr(cal, "calibrate", spy)
    results = cal.zeroday(profiles, workloads, tallies)
    ids = [r.row.id for r in results]
    assert seen[0] == set(ids)  # the in-sample fit
    assert [next(iter(set(ids) - s)) for s in seen[1:]] == ids
    assert all(len(s) == len(ids) - 1 for s in seen[1:])


def test_a_row_held_out_changes_the_fit_of_its_profile_only_through_its_own_data(
    profiles, workloads, tallies
) -> None:
    # The GNR row is the only one on its profile: held out, its scale cannot come from it.
    rows = [r for r in cal.all_rows(workloads) if r.id != "pwrite1-gnr-v1"]
    fit = cal.calibrate(profiles, rows, tallies)["gnr-xeon-6972p"]
    assert fit.path_scale_from == ()
    assert "geometric mean" in fit.path_scale_how


# --- JSON shape ------------------------------------------------------------------------------


def test_zeroday_json_has_the_issue_shape(profiles, workloads, tallies) -> None:
    doc = issue_json(zeroday_report(profiles, workloads, tallies))
    assert isinstance(doc, list) and len(doc) == len(cal.all_rows(workloads))
    for obj in doc:
        assert set(obj) == {
            "workload",
            "profile",
            "designs",
            "change_pct",
            "measured_change_pct",
            "held_out_error_pp",
        }
        assert set(obj["designs"]) == {"v6.13", "v6.14"}
        for d in obj["designs"].values():
            assert set(d) == {"ops_per_s", "cycles_per_op"} and d["ops_per_s"] > 0
    json.dumps(doc)


def _run_cli(argv: list[str]) -> int:
    from writepath.cli import main

    return main(argv)


def test_a_bad_profiles_dir_is_an_error_not_a_traceback(tmp_path: Path, capsys) -> None:
    lines = (PROFILES / "amd-epyc-this-machine.toml").read_text().splitlines()
    cut = [ln for ln in lines if not ln.startswith('source = "microbench getppid')]
    assert len(cut) == len(lines) - 1
    (tmp_path / "p.toml").write_text("\n".join(cut))
    assert _run_cli(["profiles", "--profiles-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cost.syscall.source" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe not utf-8", b"x = " + b"9" * 5000, b"x = " + b"[" * 100_000, b"name = ", b""],
)
@pytest.mark.parametrize("kind", ["profiles", "workloads"])
def test_hostile_cost_files_are_one_line_not_a_traceback(
    kind: str, content: bytes, tmp_path: Path, capsys
) -> None:
    """--profiles-dir and --workloads-dir take files from anywhere, read as scenario files are."""
    (tmp_path / "bad.toml").write_bytes(content)
    argv = [
        "bench",
        "pwrite1",
        "--profile",
        "amd-epyc-this-machine",
        f"--{kind}-dir",
        str(tmp_path),
    ]
    assert _run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.toml" in err and "Traceback" not in err


def test_a_workload_with_a_bad_scenario_names_the_field() -> None:
    doc = tomllib.loads((WORKLOADS / "will-it-scale-pwrite1.toml").read_text())
    doc["scenario"]["call"][0]["op"] = "teleport"
    with pytest.raises(WorkloadError, match="scenario"):
        parse_workload(doc, "w.toml")


# --- sweep -----------------------------------------------------------------------------------


def test_sweep_is_the_same_with_one_or_two_workers(profiles) -> None:
    from writepath.cost.sweep import run_sweep

    p = profiles["amd-epyc-this-machine"]
    kw: dict[str, Any] = {"sizes": [1, 4096, 8192], "states": ["resident", "untouched-anon"]}
    a = run_sweep(p, workers=1, **kw).to_json()
    b = run_sweep(p, workers=2, **kw).to_json()
    assert a == b
    assert a["crossover"]["resident"]["sizes_v6.13_wins"] == []  # one window fewer always wins
    assert a["crossover"]["untouched-anon"]["sizes_v6.13_wins"] == [1, 4096, 8192]


def test_sweep_refuses_unknown_states_and_sizes(profiles) -> None:
    from writepath.cost.sweep import run_sweep

    with pytest.raises(ValueError):
        run_sweep(profiles["no-smap"], sizes=[0])
    with pytest.raises(ValueError):
        run_sweep(profiles["no-smap"], sizes=[1], states=["swapped-to-mars"])


# --- path length for the lab ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workload", "fs"),
    [("pwrite1", "tmpfs"), ("write1", "tmpfs"), ("writeseek1", "tmpfs"), ("fsbuffer-w", "ramfs")],
)
def test_predicted_path_length_change_is_one_prefault_per_op_over_the_v6_13_path(
    workload: str, fs: str, profiles
) -> None:
    from writepath.cost.report import predicted_path_length_change

    amd = profiles["amd-epyc-this-machine"]
    # Each loop writes from a resident one-page buffer: v6.13 pays, per operation, one
    # fault_in_iov_iter_readable call, its one window and one touched page; v6.14 none of them.
    # (write1 and fsbuffer-w rewind once per period: an lseek costs the same in both designs.)
    prefault = sum(amd.cost_insns(k) for k in ("fault_in_call", "uaccess_window", "fault_in_touch"))
    base = amd.measurements[f"path_length_{workload}_{fs}"][0]
    assert predicted_path_length_change(workload) == pytest.approx(-prefault / base * 100)
    # Profiles without their own counts or path lengths take this machine's (same x86 code).
    assert predicted_path_length_change(workload, "gnr-xeon-6972p") == pytest.approx(
        predicted_path_length_change(workload)
    )


def test_predicted_path_length_change_on_the_other_filesystem_the_lab_runs(profiles) -> None:
    from writepath.cost.report import predicted_path_length_change

    amd = profiles["amd-epyc-this-machine"]
    prefault = sum(amd.cost_insns(k) for k in ("fault_in_call", "uaccess_window", "fault_in_touch"))
    for workload, fs in (("pwrite1", "ramfs"), ("fsbuffer-w", "tmpfs")):
        base = amd.measurements[f"path_length_{workload}_{fs}"][0]
        got = predicted_path_length_change(f"{workload}.{fs}")
        assert got == pytest.approx(-prefault / base * 100)
    assert predicted_path_length_change("pwrite1.tmpfs") == predicted_path_length_change("pwrite1")
    with pytest.raises(ValueError, match="path_length_pwrite1_ext4"):
        predicted_path_length_change("pwrite1.ext4")  # the lab measured no ext4 path


def test_predicted_path_length_change_refuses_unknown_names() -> None:
    from writepath.cost.report import predicted_path_length_change

    with pytest.raises(ValueError, match="pwrite9"):
        predicted_path_length_change("pwrite9")
    with pytest.raises(ValueError):
        predicted_path_length_change("pwrite1", "no-such-cpu")


def test_insns_need_a_source() -> None:
    doc = _doc("amd-epyc-this-machine.toml")
    doc["cost"]["retry"]["insns"] = 12
    with pytest.raises(ProfileError) as e:
        parse_profile(doc, "p.toml")
    assert e.value.field == "cost.retry.insns_source"
    doc["cost"]["retry"]["insns_source"] = "counted by hand"
    assert parse_profile(doc, "p.toml").costs["retry"].insns == 12


# --- will-it-scale's shared-file tests: two tasks, one inode -----------------------------------

#: test -> (file size after the period, [(offset, fill spec of the bytes there)]): pwrite2 and
#: writeseek2 write page 0 from both tasks, pwrite3 and writeseek3 page k from task k.
SHARED_FILE_ENDS = {
    "pwrite2": (4096, None),
    "writeseek2": (4096, None),
    "pwrite3": (8192, [(0, "pattern:7"), (4096, "pattern:100")]),
    "writeseek3": (8192, [(0, "pattern:7"), (4096, "pattern:100")]),
}


@pytest.mark.parametrize("test", sorted(SHARED_FILE_ENDS))
def test_a_shared_file_workload_runs_two_tasks_that_wait_for_i_rwsem(workloads, test) -> None:
    from writepath.cost.report import run_workload
    from writepath.scenario import fill

    w = workloads[f"will-it-scale.{test}"]
    assert w.tasks == 2 and w.scenario.tasks == ("main", "t2")
    assert "will-it-scale" in w.source and f"tests/{test}.c" in w.source
    size, pages = SHARED_FILE_ENDS[test]
    for design in cal.DESIGNS:
        result = run_workload(w, design)
        assert result.verdict == "ok"
        writes = [c for c in result.calls if c.op in ("write", "pwrite")]
        # Each task makes ops_per_period writes of the whole 4 KiB buffer.
        assert len(writes) == 2 * w.ops_per_period
        assert all(c.ret == 4096 for c in writes)
        seeks = [c.ret for c in result.calls if c.op == "lseek"]
        if test.startswith("writeseek"):
            # Each task seeks its own file position: task k to page k (0 for writeseek2).
            assert sorted(set(seeks)) == ([0] if test == "writeseek2" else [0, 4096])
        f = result.files["target"]
        # Two descriptions, not one shared position: the file does not grow past the pages.
        assert f.size == size
        if pages is None:
            # Both tasks write page 0 whole under i_rwsem: it holds one buffer, never a mix.
            assert f.read(0, 4096) in (fill("pattern:7", 4096), fill("pattern:100", 4096))
        else:
            for offset, spec in pages:
                assert f.read(offset, 4096) == fill(spec, 4096)
        waits = [e for e in result.events if e[0] == tp.LOCK_WAIT]
        assert waits and all(str(e[2]).startswith("i_rwsem(target)") for e in waits)


def _flat_profile(syscall: float) -> Any:
    """This machine's profile with every cost 0 but the copy (1 cycle a byte) and the syscall
    entry: the copy is inside i_rwsem, the syscall outside it."""
    doc = _doc("amd-epyc-this-machine.toml")
    for name, table in doc["cost"].items():
        table["value"] = {"copy_byte": 1.0, "syscall": syscall}.get(name, 0.0)
    return parse_profile(doc, "flat.toml")


@pytest.mark.parametrize("test", ["pwrite2", "writeseek3"])
def test_the_i_rwsem_section_bounds_the_rate_of_tasks_on_one_file(workloads, test) -> None:
    w = workloads[f"will-it-scale.{test}"]
    t = workload_tallies([w])
    syscalls = 1 if test.startswith("pwrite") else 2  # writeseek adds the lseek
    for syscall, serialized in ((100.0, True), (10_000.0, False)):
        p = _flat_profile(syscall)
        pred = cal.predict(w, p, t)
        for d in cal.DESIGNS:
            # Per task and operation: 4096 bytes copied under the lock, the syscalls outside.
            assert pred.cycles_per_op[d] == pytest.approx(4096 + syscalls * syscall)
            assert pred.critical_cycles_per_op[d] == pytest.approx(4096)
            if serialized:
                # Two tasks take turns in a 4096-cycle section: each gets half the lock.
                assert pred.ops_per_s[d] == pytest.approx(p.hz / (2 * 4096))
                assert pred.bound(d) == "i_rwsem"
            else:
                assert pred.ops_per_s[d] == pytest.approx(p.hz / (4096 + syscalls * syscall))
                assert pred.bound(d) == "uncontended"


def test_bench_json_of_a_shared_file_workload_has_the_bound_and_no_measurement(capsys) -> None:
    assert _run_cli(["bench", "pwrite2", "--profile", "icl-xeon-gold-6346", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["workload"] == "will-it-scale.pwrite2" and obj["tasks"] == 2
    assert "measured_change_pct" not in obj  # no 0day row for the shared-file tests
    for d in obj["designs"].values():
        assert d["bound"] in ("i_rwsem", "uncontended")
        assert d["ops_per_s"] == pytest.approx(
            min(d["uncontended_ops_per_s"], d["serialized_ops_per_s"])
        )
        assert d["i_rwsem_section_cycles_per_op"] < d["cycles_per_op"]
    assert _run_cli(["bench", "writeseek3", "--profile", "icl-xeon-gold-6346"]) == 0
    out = capsys.readouterr().out
    assert "2 tasks on one inode" in out and "no 0day measurement" in out
