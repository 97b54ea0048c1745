"""The differential run's plumbing, with a fake kernel injected in place of the oracle: what each
kernel outcome becomes, the report, the exit code and the --json lines. (Whether the model
agrees with the real kernel is tests/test_oracle.py's business.)"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import writepath.diff as diff
from writepath.cli import main
from writepath.diff import DiffOutcome, diff_one, run_diff
from writepath.mounts import FsPool
from writepath.report import DiffReport, DiffRow
from writepath.results import CallResult, RunResult
from writepath.run import run_scenario
from writepath.scenario import Scenario, default_catalogue, load_scenario

CAT = default_catalogue()
SELF = load_scenario(CAT / "self-mmap-same-page.toml")
UNCACHED_EXT4 = load_scenario(CAT / "evicted-ext4-pos1-len10.toml")


def kernel(scenario: Scenario, how: str) -> RunResult:
    """A made-up kernel result. ``agree``: the model's own result, so the comparison can only
    agree; ``differ``: the same with the first call returning one byte less; else a run that
    ended with that verdict (skip, timeout, signal, error) and no results."""
    if how in ("agree", "differ"):
        r = run_scenario(scenario, "v6.14", keep_events=False)
        if how == "differ":
            first = r.calls[0]
            assert first.ret is not None
            r = dataclasses.replace(r, calls=[CallResult(first.op, first.ret - 1), *r.calls[1:]])
        return dataclasses.replace(r, design="kernel")
    return RunResult(scenario.name, "kernel", how, [], {}, f"made up: {how}")


class FakeKernel:
    """An oracle that answers each run with the next outcome of a script, and records what it
    was asked."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes: Iterator[str] = iter(outcomes)
        self.asked: list[tuple[str, tuple[str, ...], float]] = []

    def __call__(self, scenario: Scenario, pool: FsPool, timeout: float) -> RunResult:
        self.asked.append((scenario.name, tuple(f.fs for f in scenario.files), timeout))
        return kernel(scenario, next(self.outcomes))


OUTCOMES = [
    # kernel outcome -> diff result, reason
    ("agree", "agree", ""),
    ("differ", "differ", "call[0] pwrite: model 4096, kernel 4095"),
    ("skip", "skip", "made up: skip"),
    ("timeout", "error", "kernel timeout: made up: timeout"),
    ("signal", "error", "kernel signal: made up: signal"),
    ("error", "error", "kernel error: made up: error"),
]


@pytest.mark.parametrize(("how", "result", "reason"), OUTCOMES)
def test_diff_one(how: str, result: str, reason: str) -> None:
    fake = FakeKernel(how)
    with FsPool() as pool:
        outcome = diff_one(SELF, pool, "v6.14", fake, timeout=3.0)
    assert outcome == DiffOutcome(result, reason)
    status, detail = outcome  # still unpacks as the (status, detail) pair it used to be
    assert (status, detail) == (result, reason)
    assert fake.asked == [("self-mmap-same-page", ("tmpfs",), 3.0)]


def test_run_diff_retargets_and_skips_what_cannot_exist() -> None:
    """An uncached ext4 file cannot be on tmpfs: a skip with the reason, the kernel not asked."""
    fake = FakeKernel("agree", "agree", "agree")
    report = run_diff([SELF, UNCACHED_EXT4], ["tmpfs", "xfs"], design="v6.14", oracle=fake)
    assert [(r.scenario, r.fs, r.result) for r in report.rows] == [
        ("self-mmap-same-page", "tmpfs", "agree"),
        ("self-mmap-same-page", "xfs", "agree"),
        ("evicted-ext4-pos1-len10", "tmpfs", "skip"),
        ("evicted-ext4-pos1-len10", "xfs", "agree"),
    ]
    assert "page cache" in report.rows[2].reason
    assert [(name, fss) for name, fss, _ in fake.asked] == [
        ("self-mmap-same-page", ("tmpfs",)),
        ("self-mmap-same-page", ("xfs",)),
        ("evicted-ext4-pos1-len10", ("xfs",)),
    ]
    assert report.totals == {"agree": 3, "trace-differs": 0, "differ": 0, "skip": 1, "error": 0}
    assert report.design == "v6.14"


def test_run_diff_without_fs_uses_the_scenarios_own() -> None:
    report = run_diff([UNCACHED_EXT4], design="v6.14", oracle=FakeKernel("skip"))
    assert report.rows == (DiffRow("evicted-ext4-pos1-len10", "ext4", "skip", "made up: skip"),)


def test_run_diff_refuses_an_unknown_filesystem() -> None:
    with pytest.raises(ValueError, match="zfs"):
        run_diff([SELF], ["zfs"], oracle=FakeKernel())


def test_run_diff_reports_progress() -> None:
    calls: list[tuple[int, int, str]] = []
    run_diff(
        [SELF],
        ["tmpfs", "ramfs"],
        oracle=FakeKernel("skip", "skip"),
        progress=lambda done, total, label: calls.append((done, total, label)),
    )
    assert calls == [
        (0, 2, "self-mmap-same-page [tmpfs]"),
        (1, 2, "self-mmap-same-page [ramfs]"),
        (2, 2, ""),
    ]


def test_totals_count_every_result() -> None:
    rows = tuple(DiffRow("s", "tmpfs", r, "") for r in ("agree", "error", "error", "skip"))
    assert DiffReport("v6.14", "6.18", rows).totals == {
        "agree": 1,
        "trace-differs": 0,
        "differ": 0,
        "skip": 1,
        "error": 2,
    }


EXIT_CODES = [
    # one kernel outcome per filesystem (tmpfs, ramfs, ext4) -> exit code
    (("agree", "agree", "agree"), 0),
    (("agree", "skip", "skip"), 0),
    (("skip", "skip", "skip"), 3),
    (("agree", "differ", "skip"), 1),
    (("agree", "timeout", "agree"), 2),
    (("signal", "error", "skip"), 2),
    (("differ", "timeout", "agree"), 1),
]


@pytest.mark.parametrize(("outcomes", "code"), EXIT_CODES)
def test_diff_exit_codes_and_json(
    outcomes: tuple[str, ...],
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(diff, "real_oracle", FakeKernel(*outcomes))
    rc = main(["diff", "self-mmap-same-page", "--fs", "tmpfs,ramfs,ext4", "--json"])
    out, err = capsys.readouterr()
    assert rc == code
    assert err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    expected = {"agree": "agree", "differ": "differ", "skip": "skip"}
    results = [expected.get(how, "error") for how in outcomes]
    assert lines[:-1] == [
        {"scenario": "self-mmap-same-page", "fs": fs, "result": result, "reason": line["reason"]}
        for fs, result, line in zip(("tmpfs", "ramfs", "ext4"), results, lines, strict=False)
    ]
    assert all(isinstance(line["reason"], str) for line in lines[:-1])
    assert lines[-1] == {
        "totals": {
            r: results.count(r) for r in ("agree", "trace-differs", "differ", "skip", "error")
        }
    }


def test_diff_text_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(diff, "real_oracle", FakeKernel("differ", "timeout"))
    assert main(["diff", "self-mmap-same-page", "--fs", "tmpfs,xfs"]) == 1
    out = capsys.readouterr().out
    assert "None" not in out
    assert "self-mmap-same-page  tmpfs  differ  call[0] pwrite: model 4096, kernel 4095" in out
    assert "self-mmap-same-page  xfs    error   kernel timeout: made up: timeout" in out
    assert out.rstrip().endswith("0 agree, 1 differ, 0 skipped, 1 errors")  # no trace rows


def test_diff_passes_the_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeKernel("agree")
    monkeypatch.setattr(diff, "real_oracle", fake)
    assert main(["diff", "self-mmap-same-page", "--timeout", "2.5"]) == 0
    assert fake.asked[0][2] == 2.5


def test_diff_of_an_empty_folder_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", str(tmp_path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no scenario files" in err


def test_strict_trace_makes_a_trace_difference_fail() -> None:
    from writepath.cli import diff_exit_code
    from writepath.report import DiffReport, DiffRow

    rows = (
        DiffRow("a", "tmpfs", "agree", ""),
        DiffRow("b", "ext4", "trace-differs", "call[0]: first differing event"),
    )
    report = DiffReport("v6.18", "6.18", rows)
    assert diff_exit_code(report) == 0  # reported, not failed
    assert diff_exit_code(report, strict_trace=True) == 1
    agreeing = DiffReport("v6.18", "6.18", rows[:1])
    assert diff_exit_code(agreeing, strict_trace=True) == 0
