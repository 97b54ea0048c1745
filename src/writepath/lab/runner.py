"""Running the lab's commands: one place that prints, logs, times out and never raises.

Modelled on kunit.py's ``run_kernel``: the parent owns the child's lifetime. Every command is
printed shell-quoted before it runs (and only printed under ``--dry-run``), its output goes to
a log file under the work directory, the parent kills it (its own process group, by id) when
the stage's timeout passes, and a heartbeat line with the elapsed time shows that a long step
is alive.
"""

from __future__ import annotations

import enum
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

#: How often a long step says it is still running.
HEARTBEAT_SECONDS = 30.0
#: How often the parent looks at a running child (short: a boot takes about a second).
POLL_SECONDS = 0.05


class Status(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    #: The machine lacks something (a package, a file): not the lab's fault.
    SKIPPED = "skipped"
    #: Under --dry-run: the command was printed, not run.
    DRY_RUN = "dry-run"


@dataclass(frozen=True)
class StageResult:
    """What one stage (or one command of it) came to."""

    stage: str
    status: Status
    elapsed: float
    log: Path | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (Status.SUCCESS, Status.DRY_RUN)

    def describe(self) -> str:
        where = f" (log: {self.log})" if self.log is not None else ""
        what = f": {self.detail}" if self.detail else ""
        return f"{self.stage} {self.status.value} after {self.elapsed:.1f} s{what}{where}"


class Runner:
    """Runs commands for the stages; the back-end that tests replace."""

    def __init__(self, *, dry_run: bool = False, out: TextIO | None = None) -> None:
        self.dry_run = dry_run
        self.out = out if out is not None else sys.stdout
        self._t0 = time.monotonic()

    def say(self, message: str) -> None:
        """One progress line, stamped with the time since the lab started."""
        print(f"[lab {time.monotonic() - self._t0:6.1f}s] {message}", file=self.out, flush=True)

    def run(
        self,
        stage: str,
        argv: Sequence[str],
        *,
        log: Path,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> StageResult:
        """Run ``argv`` with its output in ``log``; the result's status says how it ended."""
        prefix = f"cd {shlex.quote(str(cwd))} && " if cwd is not None else ""
        extra = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
        self.say(f"{stage}: $ {prefix}{extra}{shlex.join(argv)}")
        if self.dry_run:
            return StageResult(stage, Status.DRY_RUN, 0.0, log)
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        full_env.update(env or {})
        start = time.monotonic()
        try:
            with open(log, "wb") as sink:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=full_env,
                    start_new_session=True,
                )
                return self._wait(stage, proc, start, timeout, log)
        except OSError as e:
            return StageResult(stage, Status.FAILURE, time.monotonic() - start, log, str(e))

    def _wait(
        self, stage: str, proc: subprocess.Popen[bytes], start: float, timeout: float, log: Path
    ) -> StageResult:
        next_beat = start + HEARTBEAT_SECONDS
        try:
            while True:
                rc = proc.poll()
                now = time.monotonic()
                if rc is not None:
                    elapsed = now - start
                    if rc == 0:
                        return StageResult(stage, Status.SUCCESS, elapsed, log)
                    return StageResult(stage, Status.FAILURE, elapsed, log, f"exit status {rc}")
                if now - start > timeout:
                    return StageResult(
                        stage, Status.TIMEOUT, now - start, log, f"killed after {timeout:.0f} s"
                    )
                if now >= next_beat:
                    self.say(f"{stage}: still running, {now - start:.0f} s")
                    next_beat += HEARTBEAT_SECONDS
                time.sleep(POLL_SECONDS)
        finally:
            if proc.poll() is None:
                # The child leads its own session, so this reaches exactly its process group.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
