"""The hostile corpus (issue 11): scenario files from anywhere must never reach past their own
files and memory, never print a traceback, never hang or blow up, and leave nothing behind.

Every file in ``tests/hostile/`` starts with ``# attack: WHAT`` and ``# expect: rejected`` (the
validation must refuse it: exit 2 and one line ``writepath: PATH: FIELD: reason`` on stderr) or
``# expect: runs`` (valid: ``run`` and ``check`` exit 0 or 1, the oracle 0, 2 or 3). A third line
``# slow: ...`` marks a file that only the parser and the memory estimate touch in the fast tests.

Environment:
  WRITEPATH_SLOW=1   also run the tests marked ``slow`` (the 1 GiB write through ``run`` and
                     ``check`` in a child process, peak RSS below 1.5 GB).

The oracle tests need root, /dev/shm and /proc/self/pagemap; they skip elsewhere. They run the
CLI in child processes with TMPDIR pointing into the test's own directory, so leftovers there
are this test's; /dev/shm, /var/tmp, the mount table and the loop devices are compared before
and after (allowing a few seconds for entries of other, concurrent runs to go away).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from writepath.cli import main
from writepath.run import run_scenario
from writepath.scenario import load_scenario

HOSTILE = Path(__file__).parent / "hostile"
SLOW = os.environ.get("WRITEPATH_SLOW") == "1"
GIB = 1 << 30
#: Peak RSS of ``writepath run`` on any file of the corpus that runs.
RSS_LIMIT = 2 * GIB
#: Peak RSS of ``run`` and ``check`` on the 1 GiB write (issue 11's target).
RSS_LIMIT_1GIB_WRITE = 1_500_000_000
#: A safety net only: address space for a child, so a runaway run fails instead of swapping
#: the machine out. The assertions are on RSS.
AS_LIMIT = 8 * GIB

#: Files that cannot carry a header comment.
HEADERLESS = {"empty.toml": ("an empty file", "rejected")}


@dataclass(frozen=True)
class Hostile:
    path: Path
    attack: str
    expect: str
    slow: bool

    def __str__(self) -> str:
        return self.path.stem


def _corpus() -> list[Hostile]:
    out = []
    for path in sorted(HOSTILE.glob("*.toml")):
        if path.name in HEADERLESS:
            attack, expect = HEADERLESS[path.name]
            out.append(Hostile(path, attack, expect, False))
            continue
        lines = path.read_bytes().split(b"\n", 3)[:3]
        head = [line.decode("ascii", "replace") for line in lines]
        attack = head[0].removeprefix("# attack: ") if head[0].startswith("# attack: ") else ""
        expect = head[1].removeprefix("# expect: ") if len(head) > 1 else ""
        slow = len(head) > 2 and head[2].startswith("# slow:")
        out.append(Hostile(path, attack, expect, slow))
    return out


CORPUS = _corpus()
REJECTED = [h for h in CORPUS if h.expect == "rejected"]
RUNS = [h for h in CORPUS if h.expect == "runs" and not h.slow]
SLOW_RUNS = [h for h in CORPUS if h.expect == "runs" and h.slow]


def _ids(entries: list[Hostile]) -> list[str]:
    return [str(h) for h in entries]


def test_corpus_is_large_and_every_file_says_what_it_tries() -> None:
    assert len(CORPUS) >= 110
    for h in CORPUS:
        assert h.attack, f"{h.path.name}: no '# attack: ...' first line"
        assert h.expect in ("rejected", "runs"), f"{h.path.name}: bad '# expect:' line"
    assert len(REJECTED) >= 50 and len(RUNS) >= 40
    assert len(SLOW_RUNS) == 1


@pytest.fixture
def bounded_memory() -> Iterator[None]:
    """Cap this process's address space for one in-process test, so a scenario that blows up
    the model fails the test with MemoryError instead of taking the machine down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next((int(line.split()[1]) << 10 for line in f if line.startswith("VmSize:")), 0)
    cap = vm + 4 * GIB
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---- validation and the model, in process -----------------------------------------------------


def _main_without_escape(command: str, hostile: Hostile) -> int:
    """``writepath COMMAND FILE`` in process. An exception escaping main() fails the test with a
    short message: its traceback (100000 frames of a parser, say) would be too big to render."""
    try:
        return main([command, str(hostile.path)])
    except Exception as e:
        pytest.fail(f"{type(e).__name__} escaped main(): {str(e)[:300]}", pytrace=False)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("hostile", REJECTED, ids=_ids(REJECTED))
def test_rejected_with_one_line(
    hostile: Hostile, command: str, capsys: pytest.CaptureFixture[str], bounded_memory: None
) -> None:
    rc = _main_without_escape(command, hostile)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == 2, f"{hostile.attack}: exit {rc}, stdout {out[:300]!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"{hostile.attack}: stderr {err[:500]!r}"
    prefix = f"writepath: {hostile.path}: "
    assert lines[0].startswith(prefix), lines[0][:300]
    field, sep, reason = lines[0][len(prefix) :].partition(": ")
    assert field and sep and reason.strip(), lines[0][:300]
    # One line that a person reads: the reason does not paste the whole hostile input back.
    assert len(lines[0]) < 1000


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("hostile", RUNS, ids=_ids(RUNS))
def test_runs_without_traceback(
    hostile: Hostile, command: str, capsys: pytest.CaptureFixture[str], bounded_memory: None
) -> None:
    rc = _main_without_escape(command, hostile)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc in (0, 1), f"{hostile.attack}: exit {rc}, stderr {err[:500]!r}"
    assert "None" not in out, out[:1000]


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "writepath.cli", *args]


#: Runs the CLI and, at exit, writes the process's own peak RSS (VmHWM, kB) to argv[1].
#: ru_maxrss from wait4(2) would not do: it keeps the high-water mark of the forked copy of
#: this (big) test process from before exec.
_MEASURED_CLI = """
import atexit, runpy, sys
out = sys.argv[1]
def report():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as g:
        g.write(str(kb))
atexit.register(report)
sys.argv = ["writepath", *sys.argv[2:]]
runpy.run_module("writepath.cli", run_name="__main__", alter_sys=True)
"""


def _measured_cli(tmp: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", _MEASURED_CLI, str(tmp / "peak-rss-kb"), *args]


def _limit_address_space() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _no_limit() -> None:  # pragma: no cover - runs in the child
    """The oracle reserves the scenario's whole region range (terabytes of address space for
    an untouched region): an address-space limit would turn that into a skip."""


@dataclass
class Child:
    returncode: int
    stdout: str
    stderr: str
    maxrss: int  # bytes, from _measured_cli; -1 if not measured
    seconds: float


def _run_measured(
    argv: list[str],
    timeout: float,
    tmp: Path,
    env: dict[str, str] | None = None,
    limit_memory: bool = True,
) -> Child:
    """Run ``argv`` to the end (killing its process group after ``timeout`` s); its peak RSS
    if it was started with _measured_cli."""
    out_path, err_path = tmp / "child.out", tmp / "child.err"
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_limit_address_space if limit_memory else _no_limit,
            start_new_session=True,
        )
    timed_out = False
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status = os.waitpid(proc.pid, 0)
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by waitpid
    assert not timed_out, f"{argv[-3:]} ran longer than {timeout} s"
    peak = tmp / "peak-rss-kb"
    maxrss = int(peak.read_text()) << 10 if peak.exists() else -1
    return Child(
        proc.returncode,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
        maxrss,
        time.monotonic() - start,
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("hostile", RUNS, ids=_ids(RUNS))
def test_run_memory_is_bounded(hostile: Hostile, tmp_path: Path) -> None:
    child = _run_measured(_measured_cli(tmp_path, "run", str(hostile.path)), 60, tmp_path)
    assert "Traceback" not in child.stdout + child.stderr, child.stderr[-2000:]
    assert child.returncode in (0, 1), f"exit {child.returncode}: {child.stderr[-500:]}"
    assert 0 < child.maxrss < RSS_LIMIT, f"peak RSS {child.maxrss >> 20} MiB"


# ---- the 1 GiB write ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("hostile", SLOW_RUNS, ids=_ids(SLOW_RUNS))
def test_big_write_is_valid_and_fits_the_default_memory_limit(hostile: Hostile) -> None:
    from writepath.scenario import DEFAULT_MAX_MEMORY, check_memory, memory_demand

    s = load_scenario(hostile.path)
    demand = memory_demand(s)
    # The source region and the written file are 1 GiB each of real bytes.
    assert demand >= GIB
    check_memory(s, DEFAULT_MAX_MEMORY)  # must not refuse a valid 1 GiB write


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="set WRITEPATH_SLOW=1 to run the 1 GiB write")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("hostile", SLOW_RUNS, ids=_ids(SLOW_RUNS))
def test_big_write_peak_rss(hostile: Hostile, command: str, tmp_path: Path) -> None:
    child = _run_measured(_measured_cli(tmp_path, command, str(hostile.path)), 540, tmp_path)
    assert "Traceback" not in child.stdout + child.stderr
    assert child.returncode == 0, child.stdout[-1000:] + child.stderr[-1000:]
    assert 0 < child.maxrss < RSS_LIMIT_1GIB_WRITE, f"peak RSS {child.maxrss >> 20} MiB"
    assert "None" not in child.stdout


# ---- the real kernel ----------------------------------------------------------------------------

needs_root_kernel = pytest.mark.skipif(
    not (
        os.geteuid() == 0
        and os.path.isdir("/dev/shm")
        and os.path.exists("/proc/self/pagemap")
        and sys.platform == "linux"
    ),
    reason="the oracle tests need root, tmpfs at /dev/shm and /proc/self/pagemap",
)


def _scratch_dirs(private_tmp: Path) -> set[str]:
    """writepath-* directories in the shared scratch places and in this test's own TMPDIR.
    Only directories: writepath makes its scratch space with mkdtemp, and plain files named
    writepath-* in /tmp belong to people and other tools."""
    found: set[str] = set()
    for d in {"/dev/shm", tempfile.gettempdir(), "/var/tmp", str(private_tmp)}:
        if os.path.isdir(d):
            found.update(str(p) for p in Path(d).glob("writepath-*") if p.is_dir())
    return found


def _mounts_and_loops() -> set[str]:
    found: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if "writepath" in fields[4] or "writepath" in fields[3]:
                found.add(f"mount {fields[4]}")
    if shutil.which("losetup"):
        r = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=30)
        found.update(f"loop {line}" for line in r.stdout.splitlines() if "writepath" in line)
    return found


def _leftovers(private_tmp: Path) -> set[str]:
    """Everything that looks like writepath's: scratch directories, mounts, loop devices."""
    return _scratch_dirs(private_tmp) | _mounts_and_loops()


def _held_by_live_process(directory: Path) -> bool:
    """A scratch directory whose lock file names a running process: still in use (another
    run on this machine), not a leftover."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        try:
            if entry.is_file() and entry.stat().st_size < 64:
                pid = int(entry.read_text().split()[0])
                if pid > 0 and os.path.exists(f"/proc/{pid}"):
                    return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _ours(directory: Path, private_tmp: Path) -> bool:
    """A leftover this test made: inside its own TMPDIR, or a scratch directory holding files
    of this file's scenarios (hostile-* or writepath-hostile-*) or no visible file at all.
    A directory holding other scenarios' files belongs to a concurrent run elsewhere."""
    if directory.is_relative_to(private_tmp):
        return True
    try:
        visible = [p.name for p in directory.iterdir() if not p.name.startswith(".")]
    except OSError:
        return False
    return not visible or any(n.startswith(("hostile-", "writepath-hostile-")) for n in visible)


def _new_leftovers(before: set[str], private_tmp: Path) -> list[str]:
    dirs = [
        Path(d)
        for d in _scratch_dirs(private_tmp) - before
        if _ours(Path(d), private_tmp) and not _held_by_live_process(Path(d))
    ]
    roots = [private_tmp, *dirs]
    others = [e for e in _mounts_and_loops() - before if any(str(root) in e for root in roots)]
    return sorted([str(d) for d in dirs] + others)


def _assert_nothing_left(before: set[str], private_tmp: Path, grace: float = 5.0) -> None:
    """No new leftover of this test's runs, allowing ``grace`` seconds. Other runs on this
    machine (other worktrees, at the same time) are told apart by their files and lock.
    What this test left is removed before failing (loop devices are autoclear: they go
    with their mount), so a failure does not litter the machine."""
    deadline = time.monotonic() + grace
    while True:
        new = _new_leftovers(before, private_tmp)
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    for entry in new:
        if entry.startswith("mount "):
            subprocess.run(["umount", entry.removeprefix("mount ")], capture_output=True)
    for entry in new:
        if not entry.startswith(("mount ", "loop ")):
            shutil.rmtree(entry, ignore_errors=True)
    assert not new, f"left behind: {new}"


@pytest.fixture
def private_env(tmp_path: Path) -> dict[str, str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    env.pop("COLUMNS", None)
    return env


def _oracle_json(path: Path, env: dict[str, str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    child = _run_measured(
        _python_cli("oracle", str(path), "--json", "--timeout", "5"),
        60,
        tmp_path,
        env,
        limit_memory=False,
    )
    assert "Traceback" not in child.stdout + child.stderr, child.stderr[-2000:]
    assert child.returncode in (0, 2, 3), f"exit {child.returncode}: {child.stderr[-500:]}"
    # One JSON object and nothing else on stdout.
    doc = json.loads(child.stdout)
    assert isinstance(doc, dict)
    return child.returncode, doc


@needs_root_kernel
@pytest.mark.timeout(120)
@pytest.mark.parametrize("hostile", RUNS, ids=_ids(RUNS))
def test_oracle_on_corpus(hostile: Hostile, tmp_path: Path, private_env: dict[str, str]) -> None:
    private_tmp = Path(private_env["TMPDIR"])
    before = _leftovers(private_tmp)
    _oracle_json(hostile.path, private_env, tmp_path)
    _assert_nothing_left(before, private_tmp)


def _model_json(path: Path) -> dict[str, Any]:
    return run_scenario(load_scenario(path), "v6.14", keep_events=False).to_json()


def _same_outcome(model: dict[str, Any], kernel: dict[str, Any]) -> None:
    assert kernel["verdict"] == "ok", kernel
    got = [(c["ret"], c["errno"]) for c in kernel["calls"]]
    assert got == [(c["ret"], c["errno"]) for c in model["calls"]]
    for name, mf in model["files"].items():
        kf = kernel["files"][name]
        assert (kf["size"], kf["digest"]) == (mf["size"], mf["digest"]), name


#: Corpus files whose real-kernel outcome must equal the model's, call by call and byte by
#: byte: descriptors the scenario does not own, the guard pages around the regions, the
#: access mode O_WRONLY|O_RDWR, and read-back of the file's very last page.
AGREEING = [
    "fd-0",
    "fd-1",
    "fd-2",
    "fd-3",
    "fd-4",
    "fd-5",
    "fd-10",
    "fd-1023",
    "fd-minus-1",
    "fd-2147483647",
    "fd-1-writev-many",
    "fd-lseek-0",
    "fd-4-5-6-7-pwritev",
    "flags-wronly-rdwr",
    "flags-all",
    "pos-llong-max-minus-1",
    "pos-last-page-writev",
    "iov-past-end-1-byte",
    "iov-past-end-1-page",
    "iov-start-past-end",
    "writev-past-end-second",
    "null-huge",
    "kernel-huge",
]


@needs_root_kernel
@pytest.mark.timeout(120)
@pytest.mark.parametrize("stem", AGREEING)
def test_oracle_agrees_with_model(stem: str, tmp_path: Path, private_env: dict[str, str]) -> None:
    path = HOSTILE / f"{stem}.toml"
    rc, kernel = _oracle_json(path, private_env, tmp_path)
    assert rc == 0, kernel
    _same_outcome(_model_json(path), kernel)


@needs_root_kernel
@pytest.mark.timeout(120)
def test_fd_1_does_not_reach_the_oracles_stdout(
    tmp_path: Path, private_env: dict[str, str]
) -> None:
    scenario = tmp_path / "fd1.toml"
    scenario.write_text(
        'name = "writepath-hostile-fd1"\n'
        '[[file]]\nname = "target"\nsize = 0\ndata = "zero"\n'
        '[[region]]\nname = "buf"\ntouched = true\ndata = "byte:0x41"\n'
        '[[call]]\nop = "write"\niov = [["buf", 0, 64]]\nfd = 1\n'
        '[[call]]\nop = "writev"\niov = [["buf", 0, 64], ["buf", 64, 64]]\nfd = 1\n'
        '[expect]\nret = ["EBADF", "EBADF"]\n'
    )
    child = _run_measured(
        _python_cli("oracle", str(scenario), "--json", "--timeout", "5"),
        60,
        tmp_path,
        private_env,
        limit_memory=False,
    )
    assert "A" * 16 not in child.stdout
    assert child.returncode == 0, child.stderr[-500:]
    kernel = json.loads(child.stdout)
    _same_outcome(_model_json(scenario), kernel)


def _pickle_that_runs(command: str) -> bytes:
    """A protocol-0 pickle whose loading calls os.system(command): what a crafted writev
    could once push into the pipe that carried the oracle child's result."""
    assert "'" not in command
    return b"cos\nsystem\n(S'" + command.encode() + b"'\ntR."


@needs_root_kernel
@pytest.mark.timeout(120)
def test_descriptors_above_the_scenarios_cannot_forge_the_result(
    tmp_path: Path, private_env: dict[str, str]
) -> None:
    marker = tmp_path / "marker-of-code-run-by-a-scenario"
    payload = _pickle_that_runs(f"touch {marker}")
    # With data "pattern", byte k of the region is k % 251 + 1: byte value v sits at offset v-1,
    # so one one-byte iovec per payload byte spells the payload out of the region.
    assert all(1 <= b <= 251 for b in payload)
    iov = ", ".join(f'["buf", {b - 1}, 1]' for b in payload)
    calls = "".join(f'[[call]]\nop = "writev"\niov = [{iov}]\nfd = {fd}\n' for fd in range(4, 10))
    scenario = tmp_path / "forge.toml"
    scenario.write_text(
        'name = "writepath-hostile-forge"\n'
        '[[file]]\nname = "target"\nsize = 0\ndata = "zero"\n'
        '[[region]]\nname = "buf"\ntouched = true\ndata = "pattern"\n'
        f"{calls}"
        '[expect]\nret = ["EBADF", "EBADF", "EBADF", "EBADF", "EBADF", "EBADF"]\n'
    )
    child = _run_measured(
        _python_cli("oracle", str(scenario), "--json", "--timeout", "5"),
        60,
        tmp_path,
        private_env,
        limit_memory=False,
    )
    assert not marker.exists(), "a scenario ran a command in the oracle"
    assert "Traceback" not in child.stdout + child.stderr, child.stderr[-2000:]
    assert child.returncode == 0, child.stderr[-500:]
    kernel = json.loads(child.stdout)
    _same_outcome(_model_json(scenario), kernel)
    assert all(c["errno"] == "EBADF" for c in kernel["calls"])


# ---- killing a running diff -----------------------------------------------------------------

SLOWISH = """name = "writepath-hostile-slow-{k}"
description = "32 MiB through pwrite: slow enough to be interrupted"

[[file]]
name = "target"
size = 0
data = "zero"

[[region]]
name = "buf"
pages = 8192
touched = true
data = "pattern:{k}"

[[call]]
op = "pwrite"
iov = [["buf", 0, 33554432]]
pos = {pos}

[expect]
ret = [33554432]
"""


def _slow_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "slow"
    folder.mkdir()
    for k in range(6):
        (folder / f"slow-{k}.toml").write_text(SLOWISH.format(k=k, pos=k * 4096))
    return folder


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _start_and_kill_diff(
    folder: Path, env: dict[str, str], before: set[str], sig: signal.Signals
) -> None:
    private_tmp = Path(env["TMPDIR"])
    proc = subprocess.Popen(
        _python_cli("diff", str(folder), "--fs", "tmpfs,ext4,xfs,ramfs"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        # Kill it mid-run: about a second after it made its first scratch directory (or after
        # 2 s, should it make none where this test can see).
        start = time.monotonic()
        while time.monotonic() - start < 5 and not (_scratch_dirs(private_tmp) - before):
            time.sleep(0.05)
        time.sleep(max(1.0, 2.0 - (time.monotonic() - start)))
        assert proc.poll() is None, "the diff ended before it could be interrupted"
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        # Its children die with it (PR_SET_PDEATHSIG), they do not linger.
        assert _wait_group_gone(proc.pid, 5), "a child of the killed diff is still running"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_root_kernel
@pytest.mark.timeout(120)
def test_sigterm_of_diff_leaves_nothing(tmp_path: Path, private_env: dict[str, str]) -> None:
    private_tmp = Path(private_env["TMPDIR"])
    before = _leftovers(private_tmp)
    _start_and_kill_diff(_slow_folder(tmp_path), private_env, before, signal.SIGTERM)
    _assert_nothing_left(before, private_tmp)


@needs_root_kernel
@pytest.mark.timeout(180)
def test_a_later_diff_cleans_what_a_sigkilled_diff_left(
    tmp_path: Path, private_env: dict[str, str]
) -> None:
    private_tmp = Path(private_env["TMPDIR"])
    before = _leftovers(private_tmp)
    folder = _slow_folder(tmp_path)
    _start_and_kill_diff(folder, private_env, before, signal.SIGKILL)
    # What the killed run left carries its own lock; the next run removes it.
    child = _run_measured(
        _python_cli("diff", str(folder / "slow-0.toml"), "--fs", "tmpfs,ext4"),
        90,
        tmp_path,
        private_env,
        limit_memory=False,
    )
    assert "Traceback" not in child.stdout + child.stderr
    assert child.returncode == 0, child.stdout[-1000:] + child.stderr[-1000:]
    _assert_nothing_left(before, private_tmp)
