"""The command line's JSON contract and trace view."""

from __future__ import annotations

import json

import pytest

from writepath.cli import main
from writepath.scenario import default_catalogue

SELF = str(default_catalogue() / "self-mmap-same-page.toml")


def test_run_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SELF, "--design", "v6.14", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "self-mmap-same-page" and out["design"] == "v6.14"
    assert out["verdict"] == "ok"
    # The page maps the very folio being written: the atomic copy faults on it (refused, the
    # folio is locked), then the late fault-in maps it with the folio unlocked (README trace
    # contract). The 6.18 kernel shows these two and then mm_filemap_map_pages: fault-around,
    # which the model does not take yet (README lists it).
    assert out["calls"] == [
        {
            "op": "pwrite",
            "ret": 4096,
            "errno": None,
            "trace": [
                "page_fault_kernel addr=map+0 ip=copy_folio_from_iter_atomic error=0x0",
                "page_fault_kernel addr=map+0 ip=fault_in_readable error=0x0",
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


def test_bad_scenario_exit_code(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "x.toml"
    p.write_text('name = "x"\n[[file]]\nname = "t"\nfs = "zfs"\n[[call]]\nop = "write"\n')
    assert main(["run", str(p)]) == 2
    assert "file[0].fs" in capsys.readouterr().err
