"""Replay a scenario on the real kernel of this machine: the oracle.

The supervisor (this module) forks one child per run. The child (``child.py``) sets the scenario
up (``setup.py``), makes its calls through libc (``libc.py``) and answers with JSON that the
parent checks field by field (``schema.py``) before it becomes a ``RunResult`` with design
``kernel``. A child that hangs is killed at the deadline; a child that dies is reported; a child
whose parent dies is killed by the kernel (PR_SET_PDEATHSIG). What this machine cannot set up is
a ``skip`` with the reason.

Verdicts: ``ok``, ``skip``, ``timeout``, ``signal``, ``error``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import platform
import select
import signal
import time
import traceback

from writepath.mounts import TRACE_INSTANCE_PREFIX, FsPool, Unavailable
from writepath.oracle import schema
from writepath.oracle.child import RAMFS_READ_LIMIT, ChildError, run_child
from writepath.oracle.libc import LibcError, set_pdeathsig
from writepath.oracle.setup import SetupError
from writepath.oracle.tracing import TraceInstance, TraceUnavailable
from writepath.results import RunResult
from writepath.scenario import Scenario

__all__ = ["ORACLE_VERDICTS", "run_oracle"]

ORACLE_VERDICTS = ("ok", "skip", "timeout", "signal", "error")


def _child_main(  # pragma: no cover - runs in the child
    scenario: Scenario,
    pool: FsPool,
    canary_dir: str | None,
    trace_instance: str | None,
    out: int,
    parent: int,
) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the death signal was armed
            os._exit(1)
        try:
            payload = run_child(scenario, pool, canary_dir, trace_instance)
        except (SetupError, LibcError, Unavailable) as e:
            payload = {"kind": "skip", "detail": str(e)}
        except ChildError as e:
            payload = {"kind": "error", "detail": str(e)}
        except BaseException as e:
            last = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
            payload = {"kind": "error", "detail": f"{type(e).__name__}: {e}{where}"}
        data = json.dumps(payload).encode()
        view = memoryview(data)
        while view:
            n = os.write(out, view)
            view = view[n:]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


_instances = itertools.count()


def run_oracle(
    scenario: Scenario,
    directory: str | None = None,
    timeout: float = 10.0,
    pool: FsPool | None = None,
    trace: bool = False,
) -> RunResult:
    """Run ``scenario`` on this machine's kernel in a child process; a RunResult with design
    ``kernel``. With ``trace``, every call carries the tracepoints it fired; where tracefs
    cannot be used, ``extra["trace_unavailable"]`` says why and the calls carry none."""
    if pool is None:
        with FsPool(directory) as own:
            return run_oracle(scenario, directory, timeout, own, trace)
    for f in scenario.files:  # make the directories in the parent, once per pool
        try:
            pool.directory(f.fs)
        except Unavailable as e:
            return _result(scenario, "skip", f"{f.fs}: {e}")
    if any(f.fs == "ramfs" for f in scenario.files) and any(
        c.pos > RAMFS_READ_LIMIT for c in scenario.calls
    ):
        return _result(
            scenario,
            "skip",
            "ramfs has no SEEK_HOLE: a file this sparse cannot be read back in the time limit",
        )
    try:  # the canary is planted in tmpfs (see child.plant_canary)
        canary_dir: str | None = pool.directory("tmpfs")
    except Unavailable:
        canary_dir = None
    instance: TraceInstance | None = None
    unavailable = ""
    if trace:
        try:
            name = f"{TRACE_INSTANCE_PREFIX}{os.getpid()}-{next(_instances)}"
            instance = TraceInstance.create(name)
            pool.register_trace_instance(instance.path)
        except TraceUnavailable as e:
            unavailable = str(e)
    try:
        result = _supervise(scenario, pool, canary_dir, instance, timeout)
    finally:
        if instance is not None:
            instance.remove()
    if unavailable:
        result.extra["trace_unavailable"] = unavailable
    return result


def _supervise(
    scenario: Scenario,
    pool: FsPool,
    canary_dir: str | None,
    instance: TraceInstance | None,
    timeout: float,
) -> RunResult:
    """Fork the child, collect its answer by the deadline, turn it into a RunResult."""
    rd, wr = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(rd)
        _child_main(scenario, pool, canary_dir, instance.path if instance else None, wr, parent)
    os.close(wr)
    chunks: list[bytes] = []
    received = 0
    deadline = time.monotonic() + timeout
    verdict = ""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                verdict = "timeout"
                break
            ready, _, _ = select.select([rd], [], [], left)
            if ready:
                chunk = os.read(rd, 1 << 20)
                if not chunk:
                    break
                received += len(chunk)
                if received > schema.MAX_RESULT_BYTES:
                    verdict = "error"
                    break
                chunks.append(chunk)
    finally:
        os.close(rd)
        if verdict:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if verdict == "timeout":
        return _result(scenario, "timeout", f"no answer within {timeout} s: killed")
    if verdict == "error":
        return _result(scenario, "error", "the child's answer exceeds the size limit")
    if os.WIFSIGNALED(status):
        return _result(scenario, "signal", f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
    return _decode(scenario, b"".join(chunks))


def _decode(scenario: Scenario, raw: bytes) -> RunResult:
    try:
        doc = schema.decode_json(raw)
        kind = doc.get("kind")
        if kind in ("skip", "error"):
            detail = doc.get("detail")
            if set(doc) != {"kind", "detail"} or not isinstance(detail, str):
                raise schema.MalformedResult(f"{kind}: wrong fields")
            return _result(scenario, str(kind), detail[:2000])
        if kind != "ok" or set(doc) != {"kind", "calls", "files", "fstypes", "traces"}:
            raise schema.MalformedResult("unknown kind or fields")
        calls = schema.decode_calls(scenario, doc["calls"])
        files = schema.decode_files(scenario, doc["files"])
        fstypes = schema.decode_fstypes(scenario, doc["fstypes"])
        traces = schema.decode_traces(scenario, doc["traces"])
    except schema.MalformedResult as e:
        return _result(scenario, "error", f"malformed answer from the child: {e}")
    if traces is not None:
        calls = [dataclasses.replace(c, trace=t) for c, t in zip(calls, traces, strict=True)]
    stale = [f"{name}: stale bytes {list(f.stale)}" for name, f in files.items() if f.stale]
    return RunResult(
        scenario.name,
        "kernel",
        "stale-data" if stale else "ok",
        calls,
        files,
        "; ".join(stale),
        extra={"kernel": platform.release(), "fs": fstypes},
    )


def _result(scenario: Scenario, verdict: str, evidence: str) -> RunResult:
    return RunResult(
        scenario.name, "kernel", verdict, [], {}, evidence, extra={"kernel": platform.release()}
    )
