"""``writepath lab``: the command line of the lab (wired into ``writepath`` by cli.py).

Exit status: 0 done, 1 the semantics replay found a kernel disagreeing with its design, 2 a stage
failed or bad usage, 3 skipped because the machine lacks something (a package, a file), 4 an
internal error of the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from writepath.lab import data, packages
from writepath.lab.initramfs import BOOT_LINE, GuestPlan
from writepath.lab.parse import BootRecord, parse_log
from writepath.lab.qemu import (
    KVM_PROBE_TIMEOUT,
    AccelInfo,
    QemuParams,
    detect_accel,
    kvm_probe_argv,
)
from writepath.lab.report import (
    LabReport,
    Predictor,
    attach_predictions,
    compute,
    load_predictor,
    render,
)
from writepath.lab.runner import Runner, StageResult, Status
from writepath.lab.semantics import render as render_semantics
from writepath.lab.semantics import run_semantics
from writepath.lab.stages import (
    BUSYBOX,
    SOURCE_TARBALL,
    BootRequest,
    Variant,
    Workdir,
    boot,
    build_guest,
    build_kernel,
    tree_version,
    unpack,
)
from writepath.lab.workloads import select
from writepath.scenario import Scenario

EXIT_OK = 0
EXIT_DIFFER = 1
EXIT_ERROR = 2
EXIT_SKIPPED = 3
EXIT_INTERNAL = 4

DEFAULT_WORKDIR = Path.home() / ".cache" / "writepath-lab"
#: Boots per kernel. Counts under -icount repeat within a few instructions, so three boots show
#: the spread; --full takes five.
DEFAULT_REPEATS = 3
FULL_REPEATS = 5
#: Operations per round (rounded up to whole write1/fsbuffer-w cycles), after WARMUP unmeasured
#: ones (will-it-scale's WARMUP_ITERATIONS idea: folios exist, the buffer is resident). A round
#: of 500 4 KiB writes is about 2.7 M guest instructions, shorter than the 10 M between two
#: ticks at HZ=100, so most rounds see no tick; each boot keeps its fewest-instruction round.
DEFAULT_OPS = 500
DEFAULT_WARMUP = 200
DEFAULT_ROUNDS = 5


@dataclass
class LabBackends:
    """What tests replace: the command runner, the package check, the host files the lab reads,
    what the machine offers, the cost model's predictions and the scenario catalogue."""

    runner: Runner | None = None
    missing: Any = field(default=packages.missing)
    tarball: Path = SOURCE_TARBALL
    busybox: Path = BUSYBOX
    accel: Callable[[], AccelInfo] = field(default=detect_accel)
    predictor: Callable[[], tuple[Predictor | None, str]] = field(default=load_predictor)
    #: None: the project's catalogue (scenario.load_catalogue).
    catalogue: Sequence[Scenario] | None = None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lab`` to the ``writepath`` sub-commands."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "lab",
        help="A/B the seed's change on real 6.12 kernels under QEMU (path length per op)",
        description=(
            "Build Debian's linux-source-6.12 as shipped and with the project's patch, boot each "
            "under QEMU TCG with -icount and the project's plugin, and report guest kernel "
            "instructions per operation for each workload, lkp-style."
        ),
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="list missing Debian packages")
    mode.add_argument("--install", action="store_true", help="apt-get install missing packages")
    mode.add_argument(
        "--parse", metavar="LOG", nargs="+", help="parse saved boot logs offline and print samples"
    )
    p.add_argument("--dry-run", action="store_true", help="print every command, run none")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--workdir", type=Path, default=None, help=f"default: {DEFAULT_WORKDIR}")
    p.add_argument(
        "--workloads",
        default=None,
        help="comma-separated names or loops (pwrite1, pwrite1.tmpfs, ...); default: all",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help=f"the complete A/B: every workload, {FULL_REPEATS} boots per kernel, and the "
        "semantics replay",
    )
    p.add_argument(
        "--semantics",
        action="store_true",
        help="only the semantics replay: the catalogue's single-task scenarios through the "
        "oracle inside each guest (base against v6.13, patched against v6.14)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help=f"boots per kernel ({DEFAULT_REPEATS})"
    )
    p.add_argument("--ops", type=int, default=DEFAULT_OPS, help="measured ops per workload")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="unmeasured ops first")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds per boot")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -j")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace, lab: LabBackends | None = None) -> int:
    """Run what ``args`` asks; stage failures and exceptions become exit codes here, once."""
    backends = lab or LabBackends()
    # Under --json, stdout carries the JSON alone; progress goes to stderr.
    runner = backends.runner or Runner(
        dry_run=args.dry_run, out=sys.stderr if args.json else sys.stdout
    )
    try:
        if args.check:
            return _check(backends)
        if args.install:
            return _install(runner, backends, args.workdir or DEFAULT_WORKDIR)
        if args.parse:
            return _parse(args.parse, args.json)
        return _run(args, runner, backends)
    except Exception:
        print("writepath lab: internal error:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return EXIT_INTERNAL


def _check(backends: LabBackends) -> int:
    absent: list[packages.Package] = backends.missing()
    for p in packages.PACKAGES:
        mark = "missing  " if p in absent else "installed"
        print(f"{mark} {p.name:18} {p.why}")
    print("note: Debian has no package with QEMU's plugin header; wp_insns.c declares its API")
    accel = backends.accel()
    print(f"accel: {accel.accel} (kvm: {accel.kvm}; {accel.note})")
    if absent:
        print("install with: " + shlex.join(packages.install_argv(absent)))
        print("          or: writepath lab --install")
        return EXIT_SKIPPED
    return EXIT_OK


def _install(runner: Runner, backends: LabBackends, workdir: Path) -> int:
    """apt-get update, then install what is missing (root needed, as for any apt-get)."""
    absent: list[packages.Package] = backends.missing()
    if not absent:
        runner.say("install: nothing missing")
        return EXIT_OK
    logs = workdir / "logs"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine's package lists may be empty or old: apt-get install alone can fail.
    update = runner.run(
        "apt-update", ["apt-get", "update", "-q"], log=logs / "apt-update.log", timeout=900
    )
    if not update.ok:
        return _stage_exit(runner, update)
    res = runner.run(
        "install", packages.install_argv(absent), log=logs / "install.log", timeout=1800, env=env
    )
    return _stage_exit(runner, res)


def _parse(logs: list[str], as_json: bool) -> int:
    rc = EXIT_OK
    out: list[dict[str, Any]] = []
    for name in logs:
        try:
            text = Path(name).read_text(errors="replace")
        except OSError as e:
            print(f"writepath lab: {name}: {e.strerror}", file=sys.stderr)
            rc = EXIT_ERROR
            continue
        record = parse_log(text)
        if not record.ok:
            rc = EXIT_ERROR
        if as_json:
            out.append(_record_json(name, record))
            continue
        print(
            f"# {name}: release {record.release or '?'}, "
            f"{'complete' if record.done else 'incomplete'}"
        )
        for s in record.samples:
            print(
                f"{s.workload.name:18} round {s.round}  {s.kernel_insns_per_op:8.1f} kernel "
                f"insns/op  {s.kernel_passes_per_op:8.1f} kernel passes/op  "
                f"{s.user_insns / s.ops:6.1f} user insns/op  ops={s.ops}"
            )
        for problem in record.problems:
            print(f"problem: {problem}")
    if as_json:
        print(json.dumps(out, indent=2))
    return rc


def _record_json(name: str, record: BootRecord) -> dict[str, Any]:
    return {
        "log": name,
        "release": record.release,
        "done": record.done,
        "problems": record.problems,
        "samples": [
            {
                "workload": s.workload.name,
                "ops": s.ops,
                "kernel_insns": s.kernel_insns,
                "user_insns": s.user_insns,
                "kernel_insns_per_op": s.kernel_insns_per_op,
                "kernel_passes": s.kernel_passes,
                "user_passes": s.user_passes,
                "wall_ns": s.wall_ns,
            }
            for s in record.samples
        ],
    }


def _stage_exit(runner: Runner, res: StageResult) -> int:
    if res.ok:
        return EXIT_OK
    runner.say(f"FAILED: {res.describe()}")
    return EXIT_SKIPPED if res.status is Status.SKIPPED else EXIT_ERROR


def _run(args: argparse.Namespace, runner: Runner, backends: LabBackends) -> int:
    try:
        workloads = select(args.workloads.split(",") if args.workloads else None)
    except ValueError as e:
        print(f"writepath lab: {e}", file=sys.stderr)
        return EXIT_ERROR
    repeats = (
        args.repeats
        if args.repeats is not None
        else (FULL_REPEATS if args.full else DEFAULT_REPEATS)
    )
    if repeats < 1 or args.ops < 1 or args.rounds < 1 or args.warmup < 0 or args.jobs < 1:
        print(
            "writepath lab: --repeats, --ops, --rounds and --jobs must be positive",
            file=sys.stderr,
        )
        return EXIT_ERROR
    absent: list[packages.Package] = backends.missing()
    if absent and not runner.dry_run:
        names = ", ".join(p.name for p in absent)
        print(f"writepath lab: missing Debian packages: {names}", file=sys.stderr)
        print("install them with: writepath lab --install", file=sys.stderr)
        return EXIT_SKIPPED
    wd = Workdir(args.workdir or DEFAULT_WORKDIR)
    accel = backends.accel()
    runner.say(f"accel: {accel.accel} (kvm: {accel.kvm}; {accel.note})")
    runner.say(f"work directory: {wd.root}")

    unpacked = unpack(runner, wd, backends.tarball)
    if not unpacked.stage.ok:
        return _stage_exit(runner, unpacked.stage)
    patch = data.data_file(data.PATCH)
    images: dict[str, Path] = {}
    for variant in (Variant("base", None), Variant("patched", patch)):
        built = build_kernel(runner, wd, variant, args.jobs)
        if not built.stage.ok:
            return _stage_exit(runner, built.stage)
        runner.say(
            f"{built.stage.stage}: {'cached' if built.cached else 'built'} "
            f"{built.image} in {built.stage.elapsed:.1f} s"
        )
        images[variant.name] = built.image
    paths = not args.semantics or args.full
    semantics = args.semantics or args.full
    kernel = tree_version(wd.tree)
    report = LabReport(kernel=kernel, accel=accel.accel)
    run_logs = wd.logs / time.strftime("run-%Y%m%d-%H%M%S")
    if paths:
        plan = GuestPlan(workloads, args.ops, args.warmup, args.rounds)
        guest = build_guest(runner, wd, plan, backends.busybox)
        if not guest.stage.ok:
            return _stage_exit(runner, guest.stage)
        records: dict[str, list[BootRecord]] = {"base": [], "patched": []}
        params = QemuParams(accel=accel.accel)
        for rep in range(repeats):
            # ABBA order: neither kernel always boots first.
            order = ("base", "patched") if rep % 2 == 0 else ("patched", "base")
            for name in order:
                req = BootRequest(
                    name, rep, images[name], guest, params, run_logs / f"boot-{rep}-{name}.log"
                )
                res = boot(runner, req)
                if not res.stage.ok:
                    return _stage_exit(runner, res.stage)
                records[name].append(res.record)
                if not runner.dry_run:
                    runner.say(
                        f"{res.stage.stage}: {len(res.record.samples)} rounds in "
                        f"{res.stage.elapsed:.1f} s"
                    )
        accel = _probe_kvm(runner, wd, accel, images["base"], guest.initramfs)
        if not runner.dry_run:
            kernel = next((r.release for r in records["base"] if r.release), kernel)
            report = compute(kernel, accel.accel, records["base"], records["patched"])
            report.notes.append(
                f"{repeats} boots per kernel; per boot the fewest-instruction of {args.rounds} "
                f"rounds of {args.ops} ops (whole cycles for write1, fsbuffer-w); logs: {run_logs}"
            )
            predictor, unavailable = backends.predictor()
            attach_predictions(report, workloads, predictor, unavailable)
    report.accel_reason = accel.note
    report.kvm = accel.kvm
    report.throughput = _throughput(accel)
    exit_code = EXIT_OK
    if semantics:
        sem = run_semantics(runner, wd, images, backends.busybox, backends.catalogue)
        if not sem.stage.ok:
            return _stage_exit(runner, sem.stage)
        if sem.report is not None:
            report.semantics = sem.report.to_json()
            if any(k.counts.get("differ", 0) for k in sem.report.kernels):
                exit_code = EXIT_DIFFER
    if runner.dry_run:
        return EXIT_OK
    run_logs.mkdir(parents=True, exist_ok=True)
    (run_logs / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        if paths:
            print(render(report))
        else:
            print(f"# writepath lab: Linux {report.kernel}, accel={report.accel}")
        print(f"# accel: {report.accel}: {report.accel_reason}")
        print(f"# throughput: {report.throughput['status']}: {report.throughput['reason']}")
        if sem_report := (sem.report if semantics else None):
            print(render_semantics(sem_report))
    return exit_code


#: Where the KVM probe's answer is kept, so it is not paid for at every run.
KVM_PROBE_FILE = "kvm-probe.json"


def _probe_kvm(
    runner: Runner, wd: Workdir, accel: AccelInfo, image: Path, initramfs: Path
) -> AccelInfo:
    """Whether the lab's base kernel boots under ``-accel kvm -cpu host``; the answer in the note.

    Only tried when /dev/kvm is there; kept in the work directory per image and kvm kind. The lab
    counts path length under TCG either way (the plugin needs TCG); a kernel that boots under
    KVM would open the way to throughput, which the lab does not measure yet.
    """
    if accel.kvm == "none":
        return accel
    argv = kvm_probe_argv(QemuParams(), image, initramfs)
    log = wd.logs / "kvm-probe.log"
    if runner.dry_run:
        runner.run("kvm-probe", argv, log=log, timeout=KVM_PROBE_TIMEOUT)
        return accel
    key = f"{image}|{accel.kvm}"
    cache = wd.root / KVM_PROBE_FILE
    try:
        doc = json.loads(cache.read_text())
        if isinstance(doc, dict) and doc.get("key") == key and isinstance(doc.get("note"), str):
            return AccelInfo(accel.accel, accel.kvm, f"{accel.note}; {doc['note']}")
    except (OSError, ValueError):
        pass
    res = runner.run("kvm-probe", argv, log=log, timeout=KVM_PROBE_TIMEOUT)
    try:
        text = log.read_text(errors="replace")[-64 << 10 :]
    except OSError:
        text = ""
    if BOOT_LINE in text:
        note = "probe: the 6.12 kernel boots under -accel kvm -cpu host"
    else:
        # QEMU's own complaint, when it made one, says why (on PVM: an MSR it cannot set).
        said = next((ln.strip() for ln in text.splitlines() if "error" in ln.lower()), "")
        note = (
            f"probe: the 6.12 kernel did not reach the guest's first line under -accel kvm "
            f"-cpu host ({res.status.value} after {res.elapsed:.0f} s"
            + (f"; {said[:160]}" if said else "")
            + f"; log {log})"
        )
    cache.write_text(json.dumps({"key": key, "note": note}) + "\n")
    return AccelInfo(accel.accel, accel.kvm, f"{accel.note}; {note}")


def _throughput(accel: AccelInfo) -> dict[str, str]:
    """What the report says about ops/s: never a TCG wall-clock figure as a gain."""
    if accel.kvm == "hardware" and "boots under -accel kvm" in accel.note:
        reason = (
            "KVM boots the lab's kernels here, but interleaved A/B throughput boots with a "
            "confidence interval are not implemented (no machine to test them on)"
        )
    else:
        reason = (
            "no usable KVM for stock kernels, so no throughput; wall-clock under TCG is the "
            "emulator's speed and is reported as noise only"
        )
    return {"status": "not measured", "reason": reason}
