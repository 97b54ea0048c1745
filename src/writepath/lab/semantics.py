"""The semantics replay: the catalogue's single-task scenarios on the lab's two real kernels.

The pre-patch 6.12 kernel runs the loop the model's ``v6.13`` design models, the patched one
the loop of ``v6.14``. Each kernel boots an initramfs holding the host's Python, writepath and
the scenarios (``pyguest``), and ``writepath.lab.guest`` replays them through the oracle inside
the guest on tmpfs, ramfs and ext4 (a ramdisk holding an image made by mkfs.ext4 on the host).
The guest's answers come back on a serial port of their own; here they are decoded with the
oracle's own schema checks (``writepath.oracle._decode``) and compared with the model exactly as
``writepath diff`` compares (``diff.diff_one`` and its ``first_difference``).

The guest's output is untrusted: read with a size bound, one JSON object per line, every field
type-checked, base64 decoded strictly, names looked up among the scenarios the host sent.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gzip
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from writepath.diff import diff_one, first_difference
from writepath.lab.guest import BOOT_PREFIX, DONE_PREFIX, MAX_EVIDENCE, RECORD_PREFIX
from writepath.lab.initramfs import CpioTree
from writepath.lab.pyguest import GuestFile, GuestPythonError, guest_environment, guest_python
from writepath.lab.qemu import QemuParams, semantics_argv
from writepath.lab.runner import Runner, StageResult, Status
from writepath.lab.stages import Workdir
from writepath.mounts import FsPool
from writepath.oracle import ORACLE_VERDICTS, schema
from writepath.results import RunResult
from writepath.run import run_scenario
from writepath.scenario import Scenario, memory_demand

#: The filesystems the guest offers, as the oracle's pool names them.
GUEST_FILESYSTEMS = ("tmpfs", "ramfs", "ext4")
#: The design each kernel of the lab runs (filemap.DESIGNS names).
DESIGN_OF = {"base": "v6.13", "patched": "v6.14"}
#: Scenarios estimated (scenario.memory_demand) above this stay on the host: the guest has
#: GUEST_MEMORY_MB in all, for Python, the ramdisk and the canary.
GUEST_SCENARIO_MEMORY = 64 << 20
GUEST_MEMORY_MB = 512
#: The oracle's per-scenario deadline inside the guest: TCG runs Python some 20 times slower.
GUEST_TIMEOUT = 60.0
#: The ext4 image: the size of the oracle's own loop images and of the guest's ramdisk
#: (kconfig.sh BLK_DEV_RAM_SIZE).
EXT4_IMAGE_MIB = 64
#: Bounds on what is read back from the guest.
MAX_RESULTS_BYTES = 192 << 20
MAX_NAME = 100
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")  # used with fullmatch
#: Verdicts a guest can only give with the child's answer (skip and error may come with one).
_ANSWERED = ("ok", "stale-data")
#: Control characters in guest text are shown as '?' so nothing reaches the terminal raw.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _CONTROL.sub("?", text)


SEMANTICS_LINE = "wp-lab: semantics exit="


@dataclass(frozen=True)
class Selection:
    """The scenarios the guest replays, and why each other catalogue scenario is not."""

    scenarios: tuple[Scenario, ...]
    not_replayed: dict[str, str]


def select_scenarios(catalogue: Sequence[Scenario]) -> Selection:
    chosen: list[Scenario] = []
    left: dict[str, str] = {}
    for s in catalogue:
        others = sorted({f.fs for f in s.files} - set(GUEST_FILESYSTEMS))
        if not s.single_task:
            left[s.name] = "more than one task (a race schedule): the replay is single-task"
        elif others:
            left[s.name] = f"{', '.join(others)}: not in the lab's guest (tmpfs, ramfs, ext4)"
        elif memory_demand(s) > GUEST_SCENARIO_MEMORY:
            left[s.name] = f"needs more than {GUEST_SCENARIO_MEMORY >> 20} MiB in the guest"
        else:
            chosen.append(s)
    return Selection(tuple(chosen), left)


def design_sensitive(scenarios: Sequence[Scenario]) -> dict[str, str]:
    """Scenarios whose model results differ between the two kernels' designs, and how."""
    out: dict[str, str] = {}
    for s in scenarios:
        a = run_scenario(s, DESIGN_OF["base"], keep_events=False)
        b = run_scenario(s, DESIGN_OF["patched"], keep_events=False)
        d = first_difference(a, b)
        if d is not None:
            out[s.name] = d.replace("model", DESIGN_OF["base"]).replace(
                "kernel", DESIGN_OF["patched"]
            )
    return out


# ---- the guest's initramfs ------------------------------------------------------------------


def init_script(timeout: float = GUEST_TIMEOUT) -> str:
    """The semantics guest's /init: the mounts the oracle's pool looks for, then the replay.

    /dev/shm is a tmpfs (the pool's tmpfs), /tmp an ext4 on the ramdisk (the pool's ext4: a
    temporary directory on ext4), ramfs the pool mounts itself. The results go to the second
    serial port, so kernel messages on the console cannot cut into them.
    """
    bb = "/bin/busybox"
    env = " ".join(f"{k}={v}" for k, v in guest_environment().items())
    return (
        "\n".join(
            [
                f"#!{bb} sh",
                "# Generated by writepath lab --semantics.",
                f"{bb} mount -t proc proc /proc",
                f"{bb} mount -t sysfs sysfs /sys",
                f"{bb} mount -t devtmpfs devtmpfs /dev",
                f"{bb} mkdir -p /dev/shm",
                f"{bb} mount -t tmpfs writepath-shm /dev/shm",
                f"{bb} zcat /wp/ext4.img.gz > /dev/ram0 && {bb} mount -t ext4 /dev/ram0 /tmp"
                ' || echo "wp-lab: ext4 unavailable"',
                f'echo "wp-lab: boot release=$({bb} uname -r)"',
                f"{env} /usr/bin/python3 -S -m writepath.lab.guest /wp/scenarios /dev/ttyS1 "
                f"{timeout:g}",
                f'echo "{SEMANTICS_LINE}$?"',
                'echo "wp-lab: done"',
                f"{bb} reboot -f",
            ]
        )
        + "\n"
    )


def build_initramfs(
    python: Sequence[GuestFile],
    scenarios: Sequence[Scenario],
    busybox: Path,
    ext4_image: bytes,
    timeout: float = GUEST_TIMEOUT,
) -> bytes:
    """The gzip-compressed newc archive of the semantics guest."""
    tree = CpioTree()
    for d in ("proc", "sys", "dev", "tmp", "mnt"):
        tree.add_dir(d)
    tree.add_char_device("dev/console", 5, 1)
    tree.add_file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in ("sh", "mount", "umount", "zcat", "mkdir"):
        tree.add_symlink(f"bin/{applet}", "busybox")
    tree.add_file("init", init_script(timeout).encode(), 0o755)
    for f in python:
        tree.add_file(f.path.lstrip("/"), f.data, f.mode)
    for s in scenarios:
        # The scenario's own file, as it is in the catalogue: the guest parses it again.
        tree.add_file(f"wp/scenarios/{s.name}.toml", Path(s.path).read_bytes())
    tree.add_file("wp/ext4.img.gz", gzip.compress(ext4_image, compresslevel=6, mtime=0))
    return gzip.compress(tree.archive(), compresslevel=6, mtime=0)


# ---- reading the guest's answers ------------------------------------------------------------


@dataclass(frozen=True)
class GuestRecord:
    name: str
    verdict: str
    evidence: str
    raw: bytes | None


@dataclass
class GuestReplay:
    release: str = ""
    records: dict[str, GuestRecord] = field(default_factory=dict)
    done: bool = False
    problems: list[str] = field(default_factory=list)


def _record(doc: Any) -> GuestRecord:
    if not isinstance(doc, dict) or set(doc) != {"name", "verdict", "evidence", "raw"}:
        raise ValueError("wrong fields")
    name, verdict, evidence, raw = doc["name"], doc["verdict"], doc["evidence"], doc["raw"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError("bad name")
    if verdict not in (*ORACLE_VERDICTS, "stale-data"):
        raise ValueError(f"{name}: unknown verdict")
    if not isinstance(evidence, str):
        raise ValueError(f"{name}: evidence is not text")
    if raw is None and verdict in _ANSWERED:
        # An answered run is judged from the child's answer, decoded here; never on trust.
        raise ValueError(f"{name}: verdict {verdict} without the child's answer")
    data: bytes | None = None
    if raw is not None:
        if not isinstance(raw, str) or len(raw) > (schema.MAX_RESULT_BYTES // 3 + 1) * 4:
            raise ValueError(f"{name}: answer is not bounded text")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"{name}: answer is not base64") from e
    return GuestRecord(name, verdict, _printable(evidence[:MAX_EVIDENCE]), data)


def parse_results(blob: bytes) -> GuestReplay:
    """The records in the guest's results port output (never raises on any input)."""
    replay = GuestReplay()
    if len(blob) > MAX_RESULTS_BYTES:
        replay.problems.append(f"results cut at {MAX_RESULTS_BYTES} bytes")
        blob = blob[:MAX_RESULTS_BYTES]
    for n, raw_line in enumerate(blob.split(b"\n"), 1):
        line = raw_line.rstrip(b"\r").decode("utf-8", errors="replace")
        for prefix in (RECORD_PREFIX, BOOT_PREFIX, DONE_PREFIX):
            if line.startswith(prefix):
                break
        else:
            if line.strip():
                replay.problems.append(f"line {n}: not a record")
            continue
        try:
            doc = json.loads(line[len(prefix) :])
            if prefix == BOOT_PREFIX:
                release = doc.get("release") if isinstance(doc, dict) else None
                if isinstance(release, str):
                    replay.release = _printable(release[:MAX_NAME])
            elif prefix == DONE_PREFIX:
                replay.done = True
            else:
                rec = _record(doc)
                if rec.name in replay.records:
                    raise ValueError(f"{rec.name}: answered twice")
                replay.records[rec.name] = rec
        except (ValueError, RecursionError) as e:
            replay.problems.append(_printable(f"line {n}: {str(e)[:200]}"))
    if len(replay.problems) > 20:
        replay.problems[20:] = [f"... and {len(replay.problems) - 20} more problems"]
    return replay


def kernel_result(scenario: Scenario, record: GuestRecord, release: str) -> RunResult:
    """The guest's answer as the oracle's RunResult: decoded with the oracle's own checks."""
    from writepath.oracle import _decode

    if record.raw is not None:
        result = _decode(scenario, record.raw)
    else:
        result = RunResult(scenario.name, "kernel", record.verdict, [], {}, record.evidence)
    return dataclasses.replace(result, extra={**result.extra, "kernel": release})


# ---- judging ------------------------------------------------------------------------------


@dataclass
class KernelSemantics:
    """One kernel's replay against its design."""

    kernel: str  # "base" or "patched"
    design: str
    release: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    #: (scenario, outcome, reason) for every scenario that did not agree.
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    #: Design-sensitive scenarios: the kernel agreed with its design and not with the other.
    sided: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "release": self.release,
            **{k: self.counts.get(k, 0) for k in ("agree", "differ", "skip", "error")},
            "findings": [{"scenario": s, "result": r, "reason": w} for s, r, w in self.findings],
            "design_sensitive_confirmed": list(self.sided),
            "problems": list(self.problems),
        }


def judge(
    kernel: str,
    scenarios: Sequence[Scenario],
    replay: GuestReplay,
    sensitive: dict[str, str],
) -> KernelSemantics:
    """Compare each scenario's guest result with the kernel's design, as ``writepath diff``."""
    design = DESIGN_OF[kernel]
    other = DESIGN_OF["patched" if kernel == "base" else "base"]
    out = KernelSemantics(kernel, design, replay.release, problems=list(replay.problems))
    if not replay.done:
        out.problems.append("the guest did not finish the replay")
    unused_pool = FsPool()  # diff_one passes it to the oracle; this oracle needs none
    for s in scenarios:
        record = replay.records.get(s.name)
        if record is None:
            outcome, reason = "error", "no answer from the guest"
        else:
            result = kernel_result(s, record, replay.release)

            def guest_oracle(
                _scenario: Scenario, _pool: FsPool, _timeout: float, r: RunResult = result
            ) -> RunResult:
                return r

            outcome, reason = diff_one(s, unused_pool, design, oracle=guest_oracle)
            if (
                outcome == "agree"
                and s.name in sensitive
                and first_difference(run_scenario(s, other, keep_events=False), result)
            ):
                out.sided.append(s.name)
        out.counts[outcome] = out.counts.get(outcome, 0) + 1
        if outcome != "agree":
            out.findings.append((s.name, outcome, reason[:MAX_EVIDENCE]))
    return out


@dataclass
class SemanticsReport:
    replayed: int
    not_replayed: dict[str, str]
    sensitive: dict[str, str]
    kernels: list[KernelSemantics] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenarios": self.replayed,
            "filesystems": list(GUEST_FILESYSTEMS),
            "not_replayed": dict(self.not_replayed),
            "design_sensitive": dict(self.sensitive),
            "kernels": {k.kernel: k.to_json() for k in self.kernels},
            "notes": list(self.notes),
        }


def render(report: SemanticsReport) -> str:
    lines = [
        f"# semantics: {report.replayed} single-task catalogue scenarios replayed through the "
        f"oracle in each guest ({', '.join(GUEST_FILESYSTEMS)}); "
        f"{len(report.not_replayed)} not replayed",
        f"{'kernel':8} {'design':7} {'agree':>6} {'differ':>6} {'skip':>5} {'error':>5}  "
        "design-sensitive confirmed",
    ]
    for k in report.kernels:
        c = k.counts
        lines.append(
            f"{k.kernel:8} {k.design:7} {c.get('agree', 0):6} {c.get('differ', 0):6} "
            f"{c.get('skip', 0):5} {c.get('error', 0):5}  {len(k.sided)}/{len(report.sensitive)}"
            f"  (Linux {k.release or '?'})"
        )
    for name, how in report.sensitive.items():
        lines.append(f"# design-sensitive: {name}: {how}")
    for k in report.kernels:
        for s, r, w in k.findings:
            lines.append(f"# {k.kernel}: {r}: {s}: {w}")
        for p in k.problems:
            lines.append(f"# {k.kernel}: problem: {p}")
    lines.extend(f"# note: {n}" for n in report.notes)
    return "\n".join(lines)


# ---- the stage ----------------------------------------------------------------------------

#: A replay of the whole selection takes minutes under TCG; a hung guest is killed at this.
SEMANTICS_BOOT_TIMEOUT = 1800.0
MKFS_TIMEOUT = 120.0


@dataclass(frozen=True)
class SemanticsRun:
    stage: StageResult
    report: SemanticsReport | None


def run_semantics(
    runner: Runner,
    wd: Workdir,
    images: dict[str, Path],
    busybox: Path,
    catalogue: Sequence[Scenario] | None = None,
) -> SemanticsRun:
    """Build the semantics guest, boot each kernel with it, judge each replay."""
    import time

    t0 = time.monotonic()
    if catalogue is None:
        from writepath.scenario import ScenarioError, load_catalogue

        try:
            catalogue = load_catalogue()
        except (ScenarioError, OSError) as e:
            why = f"the scenario catalogue cannot be loaded: {e}"
            return SemanticsRun(StageResult("semantics", Status.SKIPPED, 0.0, detail=why), None)
    selection = select_scenarios(catalogue)
    if not selection.scenarios:
        why = (
            "no single-task scenario on tmpfs, ramfs or ext4 to replay (the catalogue is the "
            "scenarios/ folder of a checkout, or of the current directory)"
        )
        return SemanticsRun(StageResult("semantics", Status.SKIPPED, 0.0, detail=why), None)
    sensitive = design_sensitive(selection.scenarios)
    report = SemanticsReport(len(selection.scenarios), selection.not_replayed, sensitive)
    image = wd.guest / "ext4.img"
    initramfs = wd.guest / "semantics.cpio.gz"
    if not runner.dry_run:
        wd.guest.mkdir(parents=True, exist_ok=True)
        with open(image, "wb") as f:
            f.truncate(EXT4_IMAGE_MIB << 20)
    mkfs = runner.run(
        "mkfs-ext4",
        # Inode tables and journal written now: no lazy-init thread writing in the guest.
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            str(image),
        ],
        log=wd.logs / "mkfs-ext4.log",
        timeout=MKFS_TIMEOUT,
    )
    if not mkfs.ok:
        return SemanticsRun(mkfs, None)
    runner.say(
        f"semantics: writing {initramfs} (the host's Python, writepath, "
        f"{len(selection.scenarios)} scenarios)"
    )
    if not runner.dry_run:
        if not busybox.exists():
            why = f"{busybox} missing"
            return SemanticsRun(StageResult("semantics", Status.SKIPPED, 0.0, detail=why), None)
        try:
            python = guest_python(cache=wd.guest / "python")
        except (GuestPythonError, OSError) as e:
            why = f"the host's Python cannot be packed for the guest: {e}"
            return SemanticsRun(StageResult("semantics", Status.SKIPPED, 0.0, detail=why), None)
        initramfs.write_bytes(
            build_initramfs(python, selection.scenarios, busybox, image.read_bytes())
        )
        image.unlink()
    run_logs = wd.logs / time.strftime("semantics-%Y%m%d-%H%M%S")
    params = QemuParams()
    for kernel in ("base", "patched"):
        results = run_logs / f"{kernel}.results"
        log = run_logs / f"{kernel}.log"
        if not runner.dry_run:
            run_logs.mkdir(parents=True, exist_ok=True)
            results.write_bytes(b"")
        argv = semantics_argv(params, images[kernel], initramfs, results, GUEST_MEMORY_MB)
        res = runner.run(f"semantics-{kernel}", argv, log=log, timeout=SEMANTICS_BOOT_TIMEOUT)
        if runner.dry_run:
            continue
        if not res.ok:
            return SemanticsRun(res, None)
        try:
            with open(results, "rb") as f:
                blob = f.read(MAX_RESULTS_BYTES + 1)
        except OSError as e:
            return SemanticsRun(
                StageResult(res.stage, Status.FAILURE, res.elapsed, log, str(e)), None
            )
        replay = parse_results(blob)
        judged = judge(kernel, selection.scenarios, replay, sensitive)
        report.kernels.append(judged)
        c = judged.counts
        runner.say(
            f"semantics-{kernel}: {c.get('agree', 0)} agree, {c.get('differ', 0)} differ, "
            f"{c.get('skip', 0)} skipped, {c.get('error', 0)} errors against {judged.design} "
            f"in {res.elapsed:.0f} s"
        )
    report.notes.append(f"guest logs and results: {run_logs}")
    return SemanticsRun(StageResult("semantics", Status.SUCCESS, time.monotonic() - t0), report)
