"""Isolation of the oracle from the scenarios it runs (issue: scenario files are untrusted).

Each test states a way a scenario could reach the oracle's own descriptors, memory or files, and
checks on the real kernel that it cannot, and that the kernel's answer is still the model's.
They skip where this machine cannot run the oracle (not root, no /dev/shm)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from writepath import parse_scenario
from writepath.diff import design_for_running_kernel, diff_one
from writepath.mounts import DIR_PREFIX, OWNER_FILE, FsPool, reap_leftovers
from writepath.oracle import run_oracle

P = 4096

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not os.path.isdir("/dev/shm"),
        reason="the oracle needs root and /dev/shm here",
    ),
    pytest.mark.timeout(60),
]


def doc(call: dict[str, Any], regions: list[dict[str, Any]] | None = None, **file: Any) -> Any:
    f = {"name": "target", "fs": "tmpfs", "size": P, "data": "pattern:1"}
    f.update(file)
    return parse_scenario(
        {
            "name": "iso",
            "file": [f],
            "region": regions
            if regions is not None
            else [{"name": "buf", "pages": 1, "touched": True, "data": "pattern:5"}],
            "call": [call],
        },
        "<test>",
    )


@pytest.fixture(scope="module")
def pool() -> Any:
    with FsPool() as p:
        yield p


def agree(s: Any, pool: FsPool) -> None:
    status, detail = diff_one(s, pool, design_for_running_kernel())
    assert status == "agree", detail


@pytest.mark.parametrize("fd", [0, 1, 2, 4, 5, 6, 7, 10, 255, 1023, -1, 2**31 - 1])
def test_foreign_descriptors_are_ebadf(fd: int, pool: FsPool) -> None:
    """fd 4 used to be the result pipe, 1 the user's stdout: every number that is not one of
    the scenario's own files is EBADF on the kernel, as in the model."""
    s = doc({"op": "pwrite", "iov": [["buf", 0, 100]], "pos": 0, "fd": fd})
    r = run_oracle(s, pool=pool)
    assert r.verdict == "ok", r.evidence
    assert [c.as_expected() for c in r.calls] == ["EBADF"]
    assert r.files["target"].read(0, P) == bytes((k + 1) % 251 + 1 for k in range(P))
    agree(s, pool)


def test_own_virtual_descriptor_reaches_the_file(pool: FsPool) -> None:
    s = doc({"op": "pwrite", "iov": [["buf", 0, 100]], "pos": 0, "fd": 3})
    r = run_oracle(s, pool=pool)
    assert [c.as_expected() for c in r.calls] == [100]
    assert r.files["target"].read(0, 100) == bytes((k + 5) % 251 + 1 for k in range(100))


def test_stdout_carries_only_the_json(tmp_path: Path) -> None:
    """A write to fd 1 from a scenario must not land in the oracle's stdout."""
    f = tmp_path / "s.toml"
    f.write_text(
        textwrap.dedent(
            """
            name = "fd-one"
            [[file]]
            name = "target"
            [[region]]
            name = "buf"
            touched = true
            data = "byte:0x41"
            [[call]]
            op = "write"
            iov = [["buf", 0, 64]]
            fd = 1
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "writepath.cli", "oracle", str(f), "--json"],
        capture_output=True,
        timeout=60,
    )
    doc = json.loads(out.stdout)
    assert doc["calls"][0]["errno"] == "EBADF"
    assert b"AAAA" not in out.stdout


def test_iov_past_the_last_region_reads_the_guard(pool: FsPool) -> None:
    """The page after the last region is a guard: the copy stops there on the kernel too."""
    s = doc({"op": "pwrite", "iov": [["buf", 0, 3 * P]], "pos": 0})
    r = run_oracle(s, pool=pool)
    assert [c.as_expected() for c in r.calls] == [P]
    assert r.files["target"].size == P
    agree(s, pool)


def test_iov_before_the_first_region_is_efault(pool: FsPool) -> None:
    s = doc({"op": "writev", "iov": [["null", 0x7F00_0000_0000 - P, 100]], "pos": 0})
    r = run_oracle(s, pool=pool)
    assert [c.as_expected() for c in r.calls] == ["EFAULT"]
    agree(s, pool)


def test_hole_stays_a_hole(pool: FsPool) -> None:
    regions = [
        {"name": "buf", "pages": 1, "touched": True, "data": "pattern:5"},
        {"name": "gap", "pages": 4, "kind": "hole"},
        {"name": "tail", "pages": 1, "touched": True, "data": "pattern:9"},
    ]
    s = doc({"op": "writev", "iov": [["buf", 0, P], ["gap", 0, 4 * P]], "pos": 0}, regions)
    r = run_oracle(s, pool=pool)
    assert [c.as_expected() for c in r.calls] == [P]
    agree(s, pool)


def test_last_page_of_the_largest_file_is_read_back(pool: FsPool) -> None:
    """6.18's SEEK_DATA misses the last page index: the read-back must not rely on it."""
    s = doc({"op": "pwrite", "iov": [["buf", 0, 1]], "pos": 2**63 - 2}, size=0, data="zero")
    r = run_oracle(s, pool=pool)
    assert [c.as_expected() for c in r.calls] == [1]
    assert r.files["target"].size == 2**63 - 1
    assert r.files["target"].read(2**63 - 2, 1) == bytes([(0 + 5) % 251 + 1])
    agree(s, pool)


def test_access_mode_three_is_ebadf(pool: FsPool) -> None:
    s = doc({"op": "pwrite", "iov": [["buf", 0, 10]], "pos": 0, "flags": ["O_WRONLY", "O_RDWR"]})
    r = run_oracle(s, pool=pool)
    assert r.verdict == "ok", r.evidence
    assert [c.as_expected() for c in r.calls] == ["EBADF"]
    agree(s, pool)


def test_reap_removes_only_dead_pools_directories(tmp_path: Path) -> None:
    dead = tmp_path / f"{DIR_PREFIX}dead"
    alive = tmp_path / f"{DIR_PREFIX}alive"
    foreign = tmp_path / f"{DIR_PREFIX}foreign"  # the name alone: not ours
    other = tmp_path / "somebody-else"
    for d in (dead, alive, foreign, other):
        d.mkdir()
    for d in (dead, alive, other):
        (d / OWNER_FILE).write_text("1\n")
    holder = os.open(alive / OWNER_FILE, os.O_RDONLY)
    child = os.fork()
    if child == 0:  # pragma: no cover - holds the lock as a live pool would
        fcntl.flock(holder, fcntl.LOCK_EX)
        time.sleep(30)
        os._exit(0)
    try:
        time.sleep(0.3)
        removed = reap_leftovers([str(tmp_path)])
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(holder)
    assert removed == [str(dead)]
    assert not dead.exists() and alive.exists() and foreign.exists() and other.exists()


_KILLED_POOL = """
import os, sys, time
from writepath.mounts import FsPool
pool = FsPool().__enter__()
print(pool.directory("ramfs"), pool.directory("tmpfs"), flush=True)
time.sleep(60)
"""


def test_sigkill_leaves_no_mount_and_the_next_pool_cleans_up() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_POOL], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ramfs_dir, tmpfs_dir = proc.stdout.readline().split()
    proc.kill()
    proc.wait()
    with open("/proc/self/mountinfo") as f:
        assert ramfs_dir not in f.read()  # the mount lived in the killed process's namespace
    assert Path(tmpfs_dir).exists()
    with FsPool():
        pass
    assert not Path(tmpfs_dir).exists()
    assert not Path(ramfs_dir).parent.exists()


_KILLED_ORACLE = """
import os, sys, time
import writepath.oracle as oracle
from writepath import parse_scenario

def hang(*args):
    open(sys.argv[1], "w").write(str(os.getpid()))
    time.sleep(120)

oracle.run_child = hang
s = parse_scenario({"name": "h", "file": [{"name": "t"}], "call": [{"op": "lseek"}]}, "<t>")
oracle.run_oracle(s, timeout=120)
"""


def test_oracle_child_dies_with_its_parent() -> None:
    pidfile = tempfile.mktemp(prefix="writepath-test-")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_ORACLE, pidfile])
    try:
        for _ in range(100):
            if os.path.exists(pidfile) and Path(pidfile).read_text():
                break
            time.sleep(0.1)
        child = int(Path(pidfile).read_text())
        proc.kill()
        proc.wait()
        for _ in range(50):
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"oracle child {child} outlived its parent")
    finally:
        if os.path.exists(pidfile):
            os.unlink(pidfile)
