"""The oracle and the differential run. The comparison logic is tested on constructed results;
the tests that touch the real kernel skip where this machine cannot run them."""

from __future__ import annotations

import os

import pytest

from writepath import load_scenario
from writepath.diff import design_for_running_kernel, first_difference, retarget
from writepath.results import CallResult, FileState, RunResult
from writepath.scenario import ScenarioError, default_catalogue

CAT = default_catalogue()


def result(ret: int, page: bytes, size: int = 4096) -> RunResult:
    return RunResult("s", "x", "ok", [CallResult("pwrite", ret)], {"t": FileState(size, {0: page})})


def test_first_difference_names_the_field() -> None:
    a = result(4096, b"\1" * 4096)
    assert first_difference(a, result(4096, b"\1" * 4096)) is None
    assert (
        first_difference(a, result(2048, b"\1" * 4096)) == "call[0] pwrite: model 4096, kernel 2048"
    )
    assert (
        first_difference(a, result(4096, b"\1" * 4096, 8192))
        == "file t size: model 4096, kernel 8192"
    )
    other = b"\1" * 100 + b"\2" + b"\1" * 3995
    assert first_difference(a, result(4096, other)) == "file t byte 100: 01 vs 02 (model vs kernel)"
    stale = RunResult(
        "s", "x", "stale-data", [CallResult("pwrite", 4096)], {"t": FileState(4096, {}, ((8, 16),))}
    )
    assert first_difference(a, stale) == "verdict: model ok, kernel stale-data"
    a_stale = RunResult(
        "s", "x", "stale-data", [CallResult("pwrite", 4096)], {"t": FileState(4096, {}, ((8, 24),))}
    )
    assert (
        first_difference(a_stale, stale)
        == "file t stale ranges [[8, 24]] vs [[8, 16]] (model vs kernel)"
    )


def test_design_for_kernel_version() -> None:
    assert design_for_running_kernel("6.13.7") == "v6.13"
    assert design_for_running_kernel("6.14.0-rc7") == "v6.14"
    assert design_for_running_kernel("6.16.2") == "v6.16"
    assert design_for_running_kernel("6.18.44-fc") == "v6.18"
    assert design_for_running_kernel("7.0.1") == "v6.18"


def test_retarget_refuses_uncached_tmpfs() -> None:
    s = load_scenario(CAT / "evicted-ext4-pos1-len10.toml")
    assert retarget(s, "xfs").files[0].fs == "xfs"
    with pytest.raises(ScenarioError, match="page cache"):
        retarget(s, "tmpfs")


needs_kernel = pytest.mark.skipif(
    not (os.path.isdir("/dev/shm") and os.path.exists("/proc/self/pagemap")),
    reason="no tmpfs at /dev/shm or no pagemap: the oracle cannot run here",
)


@needs_kernel
@pytest.mark.parametrize(
    "name",
    [
        "self-mmap-same-page",
        "efault-beyond-eof-grows-file",
        "partly-readable-chunk",
        "self-map-overlap-forward-1",
    ],
)
def test_model_agrees_with_kernel_on_tmpfs(name: str) -> None:
    from writepath.diff import diff_one
    from writepath.mounts import FsPool

    s = load_scenario(CAT / f"{name}.toml")
    with FsPool() as pool:
        status, detail = diff_one(s, pool, design_for_running_kernel())
    if status == "skip":
        pytest.skip(detail)
    assert status == "agree", detail


@needs_kernel
def test_oracle_reports_a_hang_as_a_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that never answers is killed and reported, not waited for."""
    import writepath.oracle as oracle

    def hang(*args: object) -> dict[str, object]:
        import time

        time.sleep(60)
        return {}

    monkeypatch.setattr(oracle, "run_child", hang)
    r = oracle.run_oracle(load_scenario(CAT / "pwrite1-resident.toml"), timeout=0.5)
    assert r.verdict == "timeout"
