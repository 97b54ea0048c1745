"""The command line: exit codes, one-line errors, JSON shapes, text without None, catalogue names.

The kernel is never needed here: where a command would run the oracle, a fake result is
injected in its place."""

from __future__ import annotations

import argparse
import io
import json
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import writepath.cli as cli
import writepath.oracle as oracle
from writepath.cli import main
from writepath.results import RunResult
from writepath.scenario import Scenario, ScenarioError, default_catalogue

SELF = str(default_catalogue() / "self-mmap-same-page.toml")

SCENARIO_OK = """\
name = "tiny"
[[file]]
name = "target"
[[region]]
name = "src"
touched = true
data = "pattern"
[[call]]
op = "pwrite"
iov = [["src", 0, 100]]
"""
EXPECT_RIGHT = "[expect]\nret = [100]\nsizes = { target = 100 }\n"
EXPECT_WRONG = "[expect]\nret = [99]\n"


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    """stderr must be exactly one line starting with 'writepath: '; returns it."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("writepath: "), err
    assert "Traceback" not in err
    return lines[0]


# -- JSON and text output ----------------------------------------------------------------------


def test_run_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SELF, "--design", "v6.14", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "self-mmap-same-page" and out["design"] == "v6.14"
    assert out["verdict"] == "ok"
    # The page maps the very folio being written: the atomic copy faults on it (refused, the
    # folio is locked), then the late fault-in maps it with the folio unlocked (README trace
    # contract), and fault-around maps it (mm_filemap_map_pages), as the 6.18 kernel's trace shows.
    assert out["calls"] == [
        {
            "op": "pwrite",
            "ret": 4096,
            "errno": None,
            "trace": [
                "page_fault_kernel addr=map+0 ip=copy_folio_from_iter_atomic error=0x0",
                "page_fault_kernel addr=map+0 ip=fault_in_readable error=0x0",
                "mm_filemap_map_pages file=target start=0 end=0",
            ],
        }
    ]
    assert set(out["files"]["target"]) >= {"size", "sha256", "stale"}
    for name in (
        "user_access_windows",
        "fault_in_calls",
        "page_faults_handled",
        "page_faults_failed",
        "atomic_copies_full",
        "atomic_copies_short",
        "atomic_copies_zero",
        "write_begin_calls",
        "write_end_calls",
        "retries",
        "folio_lock_acquisitions",
    ):
        assert name in out["counters"]


def test_run_json_deadlock(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SELF, "--design", "faulting-copy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "deadlock"
    assert out["calls"][0]["ret"] is None
    assert "folio_lock" in out["evidence"]


def test_trace_is_balanced_function_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", SELF]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# tracer: function_graph")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    opens = sum(line.endswith("{") for line in body)
    closes = sum("} /*" in line for line in body)
    assert opens == closes > 0
    assert "generic_perform_write() {" in text and "fault_in_iov_iter_readable()" in text


def test_text_of_a_call_that_never_returned_has_no_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = run_main(["run", SELF, "--design", "faulting-copy"], capsys)
    assert rc == 0
    assert "None" not in out
    assert "call[0] pwrite = did not return" in out


def test_text_of_a_file_too_large_to_hash_has_no_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Above 64 MiB the sha256 is not computed; the text says so instead of printing None."""
    big = SCENARIO_OK.replace('name = "target"', 'name = "target"\nsize = 104857600\ndata = "zero"')
    rc, out, _ = run_main(["run", write(tmp_path, "big.toml", big)], capsys)
    assert rc == 0
    assert "None" not in out
    assert "size 104857600 sha256 not computed (over 64 MiB)" in out


def test_compare_text_has_no_none(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["compare", "self-mmap-same-page"], capsys)
    assert rc == 0
    assert "None" not in out
    assert "DEADLOCK" in out and "LIVELOCK" in out


def test_run_does_not_keep_the_event_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge write must not hold its whole event log: only trace asks for the events."""
    seen: list[bool] = []
    real = cli.run_scenario

    def spy(s: Scenario, design: str, keep_events: bool = True, traces: bool = False) -> RunResult:
        seen.append(keep_events)
        return real(s, design, keep_events, traces)

    monkeypatch.setattr(cli, "run_scenario", spy)
    assert main(["run", SELF]) == 0
    assert main(["run", SELF, "--json"]) == 0  # traces: kept for the run, not returned
    assert main(["trace", SELF]) == 0
    assert seen == [False, False, True]


# -- exit codes and one-line errors ------------------------------------------------------------

USAGE_ERRORS = [
    (["oracle", SELF, "--timeout", "0"], "--timeout"),
    (["oracle", SELF, "--timeout", "-1"], "--timeout"),
    (["oracle", SELF, "--timeout", "nan"], "--timeout"),
    (["diff", SELF, "--timeout", "-5"], "--timeout"),
    (["bench", "--seconds", "0"], "--seconds"),
    (["bench", "--seconds", "-2"], "--seconds"),
    (["bench", "--samples", "0"], "--samples"),
    (["bench", "pwrite1", "--profile", "nosuch"], "no profile 'nosuch'"),
    (["bench", "nosuch", "--profile", "no-smap"], "no workload 'nosuch'"),
    (["bench", "pwrite1", "--profile", "no-smap", "--design", "v6.18"], "v6.13 and v6.14"),
    (["bench", "pwrite1"], "--profile"),
    (["bench", "--profile", "no-smap"], "WORKLOAD"),
    (["bench", "--0day", "pwrite1"], "--0day takes no WORKLOAD"),
    (["sweep", "--sizes", "0"], "outside"),
    (["sweep", "--sizes", "lots"], "lots"),
    (["sweep", "--states", "on-mars"], "on-mars"),
    (["sweep", "--profile", "nosuch"], "no profile"),
    (["sweep", "--workers", "0"], "--workers"),
    (["sweep", "--sizes", "1", "--states", "resident", "--save", "/nonexistent/x.json"], "cannot"),
    (["bench", "--0day", "--workloads-dir", "/nonexistent"], "no workload files"),
    (["profiles", "--profiles-dir", "/nonexistent"], "no profile files"),
    (["run", SELF, "--max-memory", "0"], "--max-memory"),
    (["run", SELF, "--max-memory", "lots"], "--max-memory"),
    (["diff", SELF, "--fs", "zfs"], "tmpfs, ramfs, ext4, xfs"),
    (["diff", SELF, "--fs", "tmpfs,zfs"], "zfs"),
    (["run", SELF, "--design", "v5.0"], "--design"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "named"), USAGE_ERRORS, ids=lambda v: " ".join(v))
def test_usage_errors_exit_2(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_main(argv, capsys)
    assert rc == 2
    assert out == ""
    assert named in err and "Traceback" not in err


def test_bad_scenario_is_one_line_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(
        tmp_path, "x.toml", 'name = "x"\n[[file]]\nname = "t"\nfs = "zfs"\n[[call]]\nop = "write"\n'
    )
    for command in ("run", "trace", "oracle", "check", "compare", "diff"):
        rc, out, err = run_main([command, p], capsys)
        assert rc == 2, command
        assert one_line(err).startswith(f"writepath: {p}: file[0].fs: "), command
        assert out == "", command


def test_missing_scenario_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "check"):
        rc, _, err = run_main([command, "no-such-scenario"], capsys)
        assert rc == 2
        assert one_line(err) == (
            "writepath: no-such-scenario: -: no such file or catalogue scenario"
        )


@pytest.mark.parametrize("command", ["check", "compare", "diff"])
def test_a_folder_without_scenarios_is_an_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_main([command, str(tmp_path)], capsys)
    assert rc == 2
    assert "no scenario files in" in one_line(err)
    assert out == ""


CHECK_CASES = [
    # scenario files in the folder -> exit code, what the output says
    # (the top-level [expect] is judged under both correct designs, v6.13 and v6.14)
    ({"a.toml": SCENARIO_OK + EXPECT_RIGHT}, 0, "4 passed, 0 failed"),
    ({"a.toml": SCENARIO_OK + EXPECT_WRONG}, 1, "0 passed, 4 failed"),
    (
        {"a.toml": SCENARIO_OK + EXPECT_RIGHT, "b.toml": SCENARIO_OK.replace("tiny", "bare")},
        0,
        "4 passed, 0 failed; 1 scenario(s) without an [expect] to judge",
    ),
    ({"a.toml": SCENARIO_OK}, 2, "nothing judged"),
]


@pytest.mark.parametrize(("files", "code", "said"), CHECK_CASES)
def test_check_exit_codes(
    files: dict[str, str],
    code: int,
    said: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    rc, out, err = run_main(["check", str(tmp_path)], capsys)
    assert rc == code
    assert said in (out if code != 2 else one_line(err))


def test_check_names_the_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "a.toml", SCENARIO_OK + EXPECT_WRONG)
    rc, out, _ = run_main(["check", str(tmp_path)], capsys)
    assert rc == 1
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert [line.split(":")[0] for line in failures] == [
        f"FAIL tiny [{d}]" for d in ("v6.13", "v6.14", "v6.16", "v6.18")
    ]
    assert all("expected [99]" in line for line in failures)


def kernel_result(verdict: str) -> Callable[..., RunResult]:
    def fake(scenario: Scenario, *args: Any, **kwargs: Any) -> RunResult:
        return RunResult(scenario.name, "kernel", verdict, [], {}, f"fake {verdict}")

    return fake


@pytest.mark.parametrize(
    ("verdict", "code"),
    [("ok", 0), ("skip", 3), ("error", 2), ("timeout", 2), ("signal", 2)],
)
def test_oracle_exit_codes(
    verdict: str, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(oracle, "run_oracle", kernel_result(verdict))
    rc, out, _ = run_main(["oracle", "self-mmap-same-page"], capsys)
    assert rc == code
    assert out.startswith(f"self-mmap-same-page on the real kernel: {verdict}")
    rc, out, _ = run_main(["oracle", "self-mmap-same-page", "--json"], capsys)
    assert rc == code
    assert json.loads(out)["verdict"] == verdict


# -- internal errors, interrupts, closed pipes ---------------------------------------------------


def raising(exc: BaseException) -> Callable[..., RunResult]:
    def boom(*args: Any, **kwargs: Any) -> RunResult:
        raise exc

    return boom


def test_internal_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "run_scenario", raising(RuntimeError("boom")))
    rc, out, err = run_main(["run", SELF], capsys)
    assert rc == 4
    assert out == ""
    assert one_line(err) == (
        "writepath: internal error: RuntimeError: boom (rerun with --debug for the traceback)"
    )


@pytest.mark.parametrize("argv", [["--debug", "run", SELF], ["run", SELF, "--debug"]])
def test_debug_shows_the_traceback(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "run_scenario", raising(RuntimeError("boom")))
    rc, _, err = run_main(argv, capsys)
    assert rc == 4
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith(
        "internal error: RuntimeError: boom (rerun with --debug for the traceback)"
    )


def test_internal_error_inside_a_library_loop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reports catch nothing themselves: a bug in the middle of check is still one line."""
    import writepath.report as report

    monkeypatch.setattr(report, "judge", raising(KeyError("x")))
    rc, _, err = run_main(["check", "self-mmap-same-page"], capsys)
    assert rc == 4
    assert "internal error: KeyError" in one_line(err)


def test_interrupt_is_one_line_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "run_scenario", raising(KeyboardInterrupt()))
    rc, _out, err = run_main(["run", SELF], capsys)
    assert rc == 130
    assert one_line(err) == "writepath: interrupted"


class ClosedPipe(io.StringIO):
    """stdout whose reader went away (as with `writepath compare | head -1`)."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def test_closed_stdout_exits_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    rc = main(["compare", "self-mmap-same-page"])
    assert rc == 141
    assert capsys.readouterr().err == ""


# -- version, help ------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["--version"], capsys)
    assert rc == 0
    assert re.fullmatch(r"writepath \d+\.\d+\.\d+\n", out)
    assert out == f"writepath {metadata.version('writepath')}\n"


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["--help"], capsys)
    assert rc == 0
    for code in ("0", "1", "2", "3", "4"):
        assert re.search(rf"^  {code}  \w", out, re.MULTILINE), code
    for command in ("check", "diff", "oracle"):
        rc, out, _ = run_main([command, "--help"], capsys)
        assert rc == 0 and "exit codes:" in out


# -- scenario arguments and memory bounds --------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "self-mmap-same-page"],
        ["run", "self-mmap-same-page.toml"],
        ["trace", "self-mmap-same-page"],
        ["check", "self-mmap-same-page", "-v"],
        ["compare", "self-mmap-same-page", "--design", "v6.14"],
    ],
)
def test_catalogue_names_are_accepted(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, err
    assert "self-mmap-same-page" in out or out.startswith("# tracer")


def test_a_path_is_not_a_catalogue_name(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file or catalogue scenario"):
        cli.find_scenario(str(tmp_path / "self-mmap-same-page"))
    assert cli.find_scenario(SELF) == Path(SELF)


def test_max_memory_reaches_the_scenario_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    limits: list[int] = []

    def check_memory(s: Scenario, limit: int) -> None:
        limits.append(limit)
        if limit < 1 << 20:
            raise ScenarioError(s.path, "-", f"needs about 1 MiB, above --max-memory {limit}")

    monkeypatch.setattr(cli, "check_memory", check_memory)
    assert main(["run", SELF, "--max-memory", "2M"]) == 0
    assert main(["check", SELF, "--max-memory", "1k"]) == 2
    assert "above --max-memory 1024" in one_line(capsys.readouterr().err)
    assert main(["run", SELF]) == 0
    assert limits == [2 << 20, 1024, cli.DEFAULT_MAX_MEMORY]


@pytest.mark.parametrize(
    ("text", "value"),
    [("512", 512), ("4K", 4096), ("4k", 4096), ("3G", 3 << 30), ("1MiB", 1 << 20), ("2T", 2 << 40)],
)
def test_byte_size(text: str, value: int) -> None:
    assert cli.byte_size(text) == value


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5G", "G", "4X", "0K"])
def test_byte_size_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.byte_size(text)


# -- progress -----------------------------------------------------------------------------------


def test_no_progress_output_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, _, err = run_main(["check", "self-mmap-same-page", "partly-readable-chunk"], capsys)
    assert rc == 0 and err == ""


def test_progress_goes_to_stderr_never_into_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a terminal on stderr, the bar is drawn there and stdout still holds only JSON."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(oracle, "run_oracle", kernel_result("skip"))
    rc, out, err = run_main(
        ["diff", "self-mmap-same-page", "partly-readable-chunk", "--json"], capsys
    )
    assert rc == 3
    assert err  # the progress display
    assert [list(json.loads(line)) for line in out.splitlines()] == [
        ["scenario", "fs", "result", "reason"],
        ["scenario", "fs", "result", "reason"],
        ["totals"],
    ]


# -- tables -------------------------------------------------------------------------------------

LONG_NAME = "a-scenario-name-long-enough-that-it-has-to-fold-somewhere-in-the-middle"
TABLE_ROWS = [
    [LONG_NAME, "4096 (2w)", "EFAULT (1w)", "LIVELOCK (2w)"],
    ["short", "12 (1w)", "12 (1w)", "DEADLOCK (1w)"],
]


@pytest.mark.parametrize("columns", [200, 80, 60])
def test_tables_fit_the_terminal(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", str(columns))
    cli._table("t", ["scenario", "v6.13", "faulting-copy", "no-fault-in"], TABLE_ROWS)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # no colours and styles
    assert max(len(line.rstrip()) for line in out.splitlines()) <= columns
    lines = out.splitlines()
    body = lines[next(k for k, line in enumerate(lines) if "───" in line) + 1 :]
    # The name column starts the line: its folded pieces read as the names again.
    names = [line.split()[0] for line in body if line[:3].strip()]
    assert "".join(names) == LONG_NAME + "short"
    assert "LIVELOCK" in out and "DEADLOCK" in out


def test_a_table_too_wide_to_fold_is_plain_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "30")
    cli._table("t", ["scenario", "v6.13", "faulting-copy", "no-fault-in"], TABLE_ROWS)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# t"
    assert lines[2].split() == [LONG_NAME, "4096", "(2w)", "EFAULT", "(1w)", "LIVELOCK", "(2w)"]


# -- the cost model's commands (issue 9) --------------------------------------------------------

ISSUE_ROW_KEYS = {"workload", "profile", "designs", "change_pct", "measured_change_pct"}


def test_bench_0day_json_is_one_object_per_row_with_the_held_out_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run_main(["bench", "--0day", "--json"], capsys)
    assert rc == 0, err
    rows = json.loads(out)
    # facts.md section 2 has five rows; each names the 0day measurement it stands beside.
    assert len(rows) == 5
    assert sorted(r["measured_change_pct"] for r in rows) == [3.6, 3.6, 4.6, 5.1, 8.8]
    for r in rows:
        assert set(r) == ISSUE_ROW_KEYS | {"held_out_error_pp"}
        assert set(r["designs"]) == {"v6.13", "v6.14"}
        for d in r["designs"].values():
            assert set(d) == {"ops_per_s", "cycles_per_op"}
            assert d["ops_per_s"] > 0 and d["cycles_per_op"] > 0
        # The change is the ratio of the two rates, and the prefault removed makes v6.14 faster.
        v13, v14 = r["designs"]["v6.13"]["ops_per_s"], r["designs"]["v6.14"]["ops_per_s"]
        assert r["change_pct"] == pytest.approx((v14 / v13 - 1) * 100)
        assert r["change_pct"] > 0


def test_bench_0day_json_with_one_design(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["bench", "--0day", "--json", "--design", "v6.13"], capsys)
    assert rc == 0
    assert all(set(r["designs"]) == {"v6.13"} for r in json.loads(out))


def test_bench_workload_json_and_one_design(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["bench", "pwrite1", "--profile", "skl-xeon-104t", "--json"], capsys)
    assert rc == 0
    obj = json.loads(out)
    assert set(obj) == ISSUE_ROW_KEYS
    assert obj["workload"] == "will-it-scale.pwrite1" and obj["measured_change_pct"] == 3.6
    rc, out, _ = run_main(
        ["bench", "write1", "--profile", "no-smap", "--design", "v6.14", "--json"], capsys
    )
    assert rc == 0
    obj = json.loads(out)
    assert "measured_change_pct" not in obj  # the 0day table has no write1 row
    assert set(obj["designs"]) == {"v6.14"}


def test_bench_workload_text_is_an_lkp_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["bench", "writeseek1", "--profile", "icl-xeon-gold-6346"], capsys)
    assert rc == 0
    assert "%change" in out and "0day writeseek1-icl-mainline" in out
    assert re.search(r"1208417\s+\+3\.6%\s+1252295", out)  # the measured row, lkp style


def test_bench_without_a_workload_is_the_speed_bench(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import writepath.bench as bench

    calls: list[tuple[int, float, str]] = []
    doc = {
        "model_calls_per_s": 100.0,
        "kernel_calls_per_s": 400.0,
        "ratio": 4.0,
        "samples": 3,
        "design": "v6.14",
        "kernel_method": "c",
        "spread": 0.1,
        "checked_calls": 300,
    }

    def fake_report(samples: int = 5, seconds: float = 0.5, design: str = "v6.18") -> dict:
        calls.append((samples, seconds, design))
        return doc

    monkeypatch.setattr(bench, "speed_report", fake_report, raising=False)
    monkeypatch.setattr(bench, "render_speed", lambda d: f"ratio {d['ratio']}", raising=False)
    argv = ["bench", "--json", "--samples", "3", "--seconds", "0.1", "--design", "v6.14"]
    rc, out, _ = run_main(argv, capsys)
    assert rc == 0
    assert json.loads(out) == {k: doc[k] for k in cli.SPEED_JSON_KEYS}
    assert calls == [(3, 0.1, "v6.14")]
    rc, out, _ = run_main(["bench"], capsys)
    assert rc == 0 and out.strip() == "ratio 4.0"
    assert calls[-1] == (5, 0.5, cli.DEFAULT_DESIGN)


def test_sweep_plot_writes_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out_png = tmp_path / "sweep.png"
    argv = ["sweep", "--sizes", "1,4096", "--states", "resident,untouched-anon"]
    rc, out, err = run_main([*argv, "--plot", str(out_png), "--workers", "2"], capsys)
    assert rc == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "sweep.svg").read_bytes()[:1000]
    assert "source: untouched-anon" in out and "v6.13 cheaper at: 1..4096" in out
    rc, out, _ = run_main([*argv, "--json"], capsys)
    doc = json.loads(out)
    assert doc["crossover"]["resident"]["sizes_v6.13_wins"] == []
    assert set(doc["points"]) == {
        f"{st}/{s}/{d}"
        for st in ("resident", "untouched-anon")
        for s in (1, 4096)
        for d in ("v6.13", "v6.14")
    }


def test_profiles_lists_every_profile_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_main(["profiles", "--json"], capsys)
    assert rc == 0
    names = {p["name"] for p in json.loads(out)}
    assert {"amd-epyc-this-machine", "icl-xeon-gold-6346", "gnr-xeon-6972p"} <= names
    assert {"skl-xeon-104t", "no-smap"} <= names
    rc, out, _ = run_main(["profiles"], capsys)
    assert rc == 0 and "microbench getppid" in out


def test_bench_cost_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_main(["bench-cost", "--0day"], capsys)
    assert rc == 2 and "invalid choice" in err
