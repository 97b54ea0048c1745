"""The judge itself: it must reject what the kernel would not do, not only accept what it does.

Each case hands the judge a result built by hand (the kernel's outcome, or a wrong one) for a
small scenario, so these tests do not depend on the model being right."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, replace
from typing import Any

import pytest

from helpers import P, scenario
from writepath import judge
from writepath.judge import consistency_violations, grows_on_failed_write
from writepath.results import CallResult, FileState, RunResult, pages_from_bytes
from writepath.scenario import Expect, fill

#: A pwrite at 8 KiB into a 4 KiB file from a PROT_NONE page.
FAILED_BEYOND_EOF: dict[str, Any] = {
    "region": [{"name": "bad", "kind": "anon", "prot": "none"}],
    "call": [{"op": "pwrite", "iov": [["bad", 0, P]], "pos": 2 * P}],
    "expect": {"consistent": True},
}


def doc_on(fs: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "file": [{"name": "target", "fs": fs, "size": P, "data": "pattern"}]}


def failed_result(design: str, size: int) -> RunResult:
    """The target (pattern data, 4 KiB) after a failed call, at ``size`` bytes."""
    content = fill("pattern", P) + bytes(size - P)
    files = {"target": FileState(size, pages_from_bytes(content))}
    return RunResult("t", design, "ok", [CallResult("pwrite", -1, "EFAULT")], files)


@pytest.mark.parametrize(
    ("fs", "design", "grown"),
    [
        ("tmpfs", "v6.14", True),
        ("ext4", "v6.14", True),
        ("ramfs", "v6.14", True),
        ("tmpfs", "kernel", True),
        ("tmpfs", "faulting-copy", True),
        ("tmpfs", "v6.13", False),
        ("ext4", "v6.13", False),
        ("tmpfs", "any-byte-check", False),
        # iomap prefaults under every design merged so far; only the copy-first iomap grows.
        ("xfs", "v6.14", False),
        ("xfs", "kernel", False),
        ("xfs", "v6.13", False),
        ("xfs", "proposed", True),
    ],
)
def test_failed_write_beyond_eof_grows_exactly_where_the_kernel_grows_it(
    fs: str, design: str, grown: bool
) -> None:
    s = scenario(**doc_on(fs, FAILED_BEYOND_EOF))
    right, wrong = (2 * P, P) if grown else (P, 2 * P)
    assert consistency_violations(s, failed_result(design, right)) == []
    assert consistency_violations(s, failed_result(design, wrong)) == [
        f"file target: size {wrong}, expected {right}"
    ]


@pytest.mark.parametrize(
    ("iov", "grows"),
    [
        ([["null", 0, P]], True),  # address 0 passes access_ok(); the copy faults
        ([["kernel", 0, P]], False),  # refused by access_ok() before the loop
        ([["null", (1 << 47) - 2 * P, P]], True),  # ends exactly at TASK_SIZE_MAX
        ([["null", (1 << 47) - 2 * P, P + 1]], False),  # crosses it
    ],
)
def test_only_a_source_past_access_ok_reaches_write_begin(iov: list[Any], grows: bool) -> None:
    doc = doc_on("tmpfs", {"call": [{"op": "pwrite", "iov": iov, "pos": 2 * P}]})
    s = scenario(**doc)
    assert grows_on_failed_write(s, "v6.14", s.calls[0]) is grows


def test_a_failed_write_at_eof_or_below_never_grows() -> None:
    doc = doc_on("tmpfs", FAILED_BEYOND_EOF)
    doc["call"] = [{**doc["call"][0], "pos": P}]
    s = scenario(**doc)
    assert consistency_violations(s, failed_result("v6.14", P)) == []
    assert consistency_violations(s, failed_result("v6.14", P + 1)) != []


def test_a_huge_return_does_not_build_a_huge_source() -> None:
    """A result claiming 1 GiB written from a 1 GiB buffer is not judged byte by byte, and the
    judge must not build the source to find that out."""
    doc = {
        "file": [{"name": "target", "fs": "tmpfs", "size": 0, "data": "zero"}],
        "region": [{"name": "buf", "kind": "anon", "pages": 1 << 18, "touched": True}],
        "call": [{"op": "pwrite", "iov": [["buf", 0, 1 << 30]], "pos": 0}],
    }
    s = scenario(**doc)
    r = RunResult(
        "t", "v6.14", "ok", [CallResult("pwrite", 1 << 30)], {"target": FileState(1 << 30)}
    )
    tracemalloc.start()
    try:
        consistency_violations(s, r)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_return_beyond_the_readable_source_is_caught() -> None:
    doc = {
        "file": [{"name": "target", "fs": "tmpfs", "size": 0, "data": "zero"}],
        "region": [
            {"name": "buf", "kind": "anon", "touched": True, "data": "pattern"},
            {"name": "bad", "kind": "anon", "prot": "none"},
        ],
        "call": [{"op": "pwrite", "iov": [["buf", 0, 2 * P]], "pos": 0}],
    }
    s = scenario(**doc)
    content = fill("pattern", P) + bytes(P)
    r = RunResult(
        "t",
        "v6.14",
        "ok",
        [CallResult("pwrite", 2 * P)],
        {"target": FileState(2 * P, pages_from_bytes(content))},
    )
    assert consistency_violations(s, r) == [
        f"call[0] returned {2 * P} but only {P} source bytes are readable"
    ]


@dataclass(frozen=True)
class _StaleFile(FileState):
    """A FileState with stale ranges, as results.FileState carries them (CONTRACTS.md)."""

    stale: tuple[tuple[int, int], ...] = ()


def judged(expect: Expect, result: RunResult) -> list[str]:
    s = scenario(**doc_on("tmpfs", {"call": [{"op": "lseek", "pos": 0}]}))
    return judge(replace(s, expect=expect), result)


def one_file(state: FileState, verdict: str = "ok") -> RunResult:
    return RunResult("t", "v6.14", verdict, [CallResult("lseek", 0)], {"target": state})


def test_content_ranges_are_compared_exactly() -> None:
    data = fill("pattern", P)[:100] + b"\x07" * 50 + fill("pattern", P)[150:]
    got = one_file(FileState(P, pages_from_bytes(data)))
    good = {"target": ((0, 100, "pattern"), (100, 50, "byte:0x07"), (150, P - 150, "pattern:150"))}
    assert judged(Expect(content=good), got) == []
    bad = {"target": ((0, 101, "pattern"),)}
    assert judged(Expect(content=bad), got) == [
        "file target [0, 101): byte 100 is 0x07, pattern gives 0x65"
    ]
    beyond = {"target": ((P - 10, 20, "zero"),)}
    assert judged(Expect(content=beyond), got) == [
        f"file target [{P - 10}, {P + 10}): beyond its size {P}"
    ]


def test_stale_ranges_and_the_stale_data_verdict() -> None:
    state = _StaleFile(2 * P, {}, stale=((100, P),))
    got = one_file(state, "stale-data")
    assert judged(Expect(verdict="stale-data", stale={"target": ((100, P),)}), got) == []
    assert judged(Expect(verdict="stale-data", stale={"target": ()}), got) == [
        f"file target: stale ranges [(100, {P})], expected []"
    ]
    assert judged(Expect(verdict="ok"), got) == ["verdict stale-data, expected ok"]
    # A result type without stale ranges has none.
    assert judged(Expect(stale={"target": ()}), one_file(FileState(P))) == []
