"""The lab's fast parts: config script, patch, benchmark, plugin, initramfs, parsing, report, CLI.

A full A/B (two kernel builds, QEMU boots) is ``writepath lab --full`` and is not run here. Tests
that need a Debian package or a static C library skip, naming what is missing.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from writepath.lab import cli, data, guest, pyguest, semantics
from writepath.lab.initramfs import DONE_LINE, CpioTree, GuestPlan, build_initramfs, init_script
from writepath.lab.packages import PACKAGES, Package
from writepath.lab.parse import BootRecord, Sample, parse_log
from writepath.lab.qemu import AccelInfo, QemuParams, detect_accel, qemu_argv
from writepath.lab.report import (
    NO_PREDICTION,
    LabReport,
    Row,
    attach_predictions,
    compute,
    load_predictor,
    render,
)
from writepath.lab.runner import Runner, Status
from writepath.lab.stages import SOURCE_TARBALL, image_key
from writepath.lab.workloads import DEFAULT_WORKLOADS, Workload, select

LAB = data.data_dir()
KCONFIG = LAB / data.KCONFIG_SCRIPT
PATCH = LAB / data.PATCH
SAMPLE = LAB / data.SAMPLE_LOG

needs_source = pytest.mark.skipif(
    not SOURCE_TARBALL.exists(), reason="linux-source-6.12 is not installed"
)
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")


# ---- the kernel config script ------------------------------------------------------------

WANT = re.compile(r'^want (?P<opt>[A-Z0-9_]+) (?P<val>\S+) "(?P<why>[^"]*)"$', re.MULTILINE)


def _wants() -> dict[str, tuple[str, str]]:
    return {m["opt"]: (m["val"], m["why"]) for m in WANT.finditer(KCONFIG.read_text())}


def test_every_config_option_says_why() -> None:
    wants = _wants()
    assert len(wants) >= 15
    for opt, (_, why) in wants.items():
        assert len(why) > 10, f"{opt} has no reason"


@pytest.mark.parametrize(
    "opt,val",
    [
        ("64BIT", "y"),
        ("SMP", "n"),
        ("SHMEM", "y"),
        ("TMPFS", "y"),
        ("PRINTK", "y"),
        ("SERIAL_8250_CONSOLE", "y"),
        ("BLK_DEV_INITRD", "y"),
        ("BINFMT_ELF", "y"),
    ],
)
def test_config_script_turns_on_what_the_lab_needs(opt: str, val: str) -> None:
    assert _wants()[opt][0] == val


@pytest.fixture(scope="module")
def partial_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Just enough of linux-source-6.12 for Kconfig and mm/filemap.c (about 10 s to extract)."""
    if not SOURCE_TARBALL.exists():
        pytest.skip("linux-source-6.12 is not installed")
    root = tmp_path_factory.mktemp("linux")
    wanted = ["*Kconfig*", "*/scripts/*", "*/Makefile", "*/configs/*", "*/arch/x86/Makefile*"]
    wanted += ["*/mm/filemap.c", "*/include/*", "*/tools/*"]
    subprocess.run(
        ["tar", "-xJf", str(SOURCE_TARBALL), "-C", str(root), "--wildcards", *wanted],
        check=True,
    )
    return root / "linux-source-6.12"


@needs_source
@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("make", "gcc", "flex", "bison")),
    reason="make, gcc, flex or bison missing",
)
def test_config_script_generates_a_config_with_every_option(
    partial_tree: Path, tmp_path: Path
) -> None:
    obj = tmp_path / "obj"
    proc = subprocess.run(
        ["sh", str(KCONFIG), str(partial_tree), str(obj)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    config = (obj / ".config").read_text()
    for opt, (val, _) in _wants().items():
        if val == "n":
            assert f"CONFIG_{opt}=" not in config, opt
        else:
            assert f"CONFIG_{opt}={val}\n" in config, opt
    # The script's own options came on top of tinyconfig, not instead of it.
    assert "CONFIG_EXPERT=y" in config
    assert "CONFIG_MODULES=y" not in config


@needs_source
@pytest.mark.skipif(shutil.which("patch") is None, reason="no patch(1)")
def test_patch_applies_cleanly_to_6_12(partial_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "mm").mkdir(parents=True)
    shutil.copy(partial_tree / "mm" / "filemap.c", tree / "mm" / "filemap.c")
    before = (tree / "mm" / "filemap.c").read_text()
    proc = subprocess.run(
        ["patch", "-p1", "-F0", "-i", str(PATCH)], cwd=tree, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "fuzz" not in proc.stdout and "offset" not in proc.stdout
    after = (tree / "mm" / "filemap.c").read_text()

    def body(src: str) -> str:
        start = src.index("ssize_t generic_perform_write(")
        return src[start : src.index("EXPORT_SYMBOL(generic_perform_write)", start)]

    # Before: one fault-in, ahead of write_begin. After: one, after write_end, in the
    # zero-progress branch.
    old, new = body(before), body(after)
    assert old.count("fault_in_iov_iter_readable") == 1
    assert old.index("fault_in_iov_iter_readable") < old.index("->write_begin")
    assert new.count("fault_in_iov_iter_readable") == 1
    assert new.index("fault_in_iov_iter_readable") > new.index("->write_end")
    assert new.index("fault_in_iov_iter_readable") > new.index("status == 0")
    # Nothing outside generic_perform_write changed.
    assert before.replace(old, "") == after.replace(new, "")


# ---- the benchmark and the plugin --------------------------------------------------------


def _static_libc() -> bool:
    if shutil.which("gcc") is None:
        return False
    out = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True)
    return Path(out.stdout.strip()).is_file()


@pytest.mark.skipif(not _static_libc(), reason="no gcc or no static C library (libc6-dev)")
def test_benchmark_builds_static_and_runs_on_the_host(tmp_path: Path) -> None:
    exe = tmp_path / "bench"
    subprocess.run(
        ["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(exe), str(LAB / "bench.c")],
        check=True,
    )
    # The markers are NOPs on a real CPU, so the benchmark runs here as it does in the guest.
    target = tmp_path / "writepath-bench-file"
    proc = subprocess.run(
        [str(exe), "write1", str(target), "4096", "300", "10", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines):
        assert f"workload=write1 file={target} size=4096 ops=300 round={k} wall_ns=" in line
    assert not target.exists()  # the benchmark removes its file
    bad = subprocess.run([str(exe), "nosuch", str(target), "1", "1", "0", "1"], check=False)
    assert bad.returncode == 2


@needs_gcc
def test_plugin_compiles(tmp_path: Path) -> None:
    so = tmp_path / "wp_insns.so"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O2",
            "-Wall",
            "-Werror",
            "-o",
            str(so),
            str(LAB / data.PLUGIN_SOURCE),
        ],
        check=True,
    )
    symbols = subprocess.run(["nm", "-D", str(so)], capture_output=True, text=True).stdout
    assert "qemu_plugin_install" in symbols and "qemu_plugin_version" in symbols


# ---- workloads and the initramfs ---------------------------------------------------------


def test_workload_cycles_and_names() -> None:
    write1 = Workload("write1", "tmpfs", 4096)
    assert write1.cycle == 256  # 1 MiB / 4 KiB
    assert write1.round_ops(500) == 512 and write1.warmup_ops(200) == 256
    fsbuffer = Workload("fsbuffer-w", "ramfs", 256)
    assert fsbuffer.cycle == 2000  # 500 KiB / 256 B
    assert fsbuffer.name == "fsbuffer-w.ramfs"
    assert Workload("pwrite1", "tmpfs", 1).name == "pwrite1-1B.tmpfs"
    assert Workload("pwrite1", "tmpfs", 4096).round_ops(500) == 500
    assert {w.name for w in select(["pwrite1"])} == {
        "pwrite1.tmpfs",
        "pwrite1.ramfs",
        "pwrite1-1B.tmpfs",
    }
    assert [w.name for w in select(["pwrite1.ramfs"])] == ["pwrite1.ramfs"]
    with pytest.raises(ValueError, match="unknown workload nosuch"):
        select(["nosuch"])


def _cpio_entries(blob: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """Read a newc archive independently of the writer: name -> (mode, data, rdev)."""
    out: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert blob[pos : pos + 6] == b"070701"
        fields = [int(blob[pos + 6 + 8 * k : pos + 14 + 8 * k], 16) for k in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name = blob[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = blob[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            assert pos == len(blob)
            return out
        out[name] = (mode, body, (rmaj, rmin))


def test_initramfs_holds_init_bench_busybox_and_console(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.write_bytes(b"\x7fELF-bench")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF-busybox" * 3)
    plan = GuestPlan(DEFAULT_WORKLOADS, 500, 200, 5)
    blob = build_initramfs(plan, bench, busybox)
    assert build_initramfs(plan, bench, busybox) == blob  # reproducible
    entries = _cpio_entries(blob)
    mode, body, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111
    assert body.decode() == init_script(plan)
    assert entries["bench"][1] == b"\x7fELF-bench"
    assert entries["bin/busybox"][1] == b"\x7fELF-busybox" * 3
    console = entries["dev/console"]
    assert stat.S_ISCHR(console[0]) and console[2] == (5, 1)
    for d in ("proc", "sys", "mnt/tmpfs", "mnt/ramfs"):
        assert stat.S_ISDIR(entries[d][0])
    script = body.decode()
    assert "/bench write1 /mnt/tmpfs/writepath-write1 4096 512 256 5" in script
    assert "/bench fsbuffer-w /mnt/ramfs/writepath-fsbuffer-w 256 2000 2000 5" in script
    assert "/bench pwrite1 /mnt/tmpfs/writepath-pwrite1 4096 500 200 5" in script
    assert script.index(DONE_LINE) > script.rindex("/bench ")


# ---- parsing -----------------------------------------------------------------------------


def _sample_values(text: str) -> list[tuple[str, int, int]]:
    """(file, ops, kernel_insns) read straight from the log text, in order."""
    results = re.findall(r"wp-lab: result workload=\S+ file=(\S+) size=\d+ ops=(\d+)", text)
    stops = re.findall(r"wp-lab-plugin: stop \d+ kernel_insns=(\d+)", text)
    assert len(results) == len(stops)
    return [(f, int(o), int(k)) for (f, o), k in zip(results, stops, strict=True)]


def test_sample_log_parses() -> None:
    text = SAMPLE.read_text()
    record = parse_log(text)
    assert record.ok, record.problems
    assert record.release is not None and record.release.startswith("6.12")
    expected = _sample_values(text)
    assert len(record.samples) == len(expected) >= 8
    for s, (file, ops, kernel) in zip(record.samples, expected, strict=True):
        assert s.workload.path == file
        assert s.ops == ops and s.kernel_insns == kernel
        assert s.kernel_insns_per_op == kernel / ops
    assert {s.workload.name for s in record.samples} == {w.name for w in DEFAULT_WORKLOADS}


@pytest.mark.parametrize(
    "text,problem",
    [
        ("", None),
        (
            "wp-lab: result workload=pwrite1 file=/mnt/tmpfs/x size=4096 ops=5 round=0 wall_ns=1\n"
            "wp-lab: done\n",
            "1 result lines but 0 plugin stop lines",
        ),
        (
            "wp-lab-plugin: stop 1 kernel_insns=5 user_insns=1 kernel_passes=5 user_passes=1\nwp-lab: done\n",
            "plugin stop line 0 is numbered 1",
        ),
        ("Kernel panic - not syncing: Attempted to kill init!\n", "Kernel panic"),
        ("wp-lab: error workload=pwrite1 what=open errno=2\nwp-lab: done\n", "what=open"),
        (
            "wp-lab-plugin: stop 0 kernel_insns=5 user_insns=1 kernel_passes=5 user_passes=1\n"
            "wp-lab: result workload=pwrite1 file=/elsewhere/x size=1 ops=5 round=0 wall_ns=1\n"
            "wp-lab: done\n",
            "unreadable result line",
        ),
        ("\x00\xff garbage \r\n" * 3, None),
    ],
)
def test_bad_logs_are_reported_not_raised(text: str, problem: str | None) -> None:
    record = parse_log(text)
    assert not record.ok
    if problem is not None:
        assert any(problem in p for p in record.problems), record.problems


# ---- the report --------------------------------------------------------------------------


def _record(per_op: dict[str, list[float]], ops: int = 1000) -> BootRecord:
    rec = BootRecord(release="6.12.0", done=True)
    for name, rounds in per_op.items():
        loop, fs = name.split(".")
        for k, v in enumerate(rounds):
            w = Workload(loop, fs, 256 if loop == "fsbuffer-w" else 4096)
            rec.samples.append(
                Sample(w, k, ops, round(v * ops), 0, round(v * ops) + 4096 * ops, 0, 2 * ops)
            )
    return rec


def test_report_takes_each_boots_cleanest_round_and_compares() -> None:
    base = [
        _record({"pwrite1.tmpfs": [1003.0, 1000.0, 1001.5]}),
        _record({"pwrite1.tmpfs": [1002.0, 1002.0]}),
    ]
    patched = [_record({"pwrite1.tmpfs": [950.0, 951.0]}), _record({"pwrite1.tmpfs": [952.0]})]
    report = compute("6.12.0", "tcg", base, patched)
    (row,) = report.rows
    assert row.workload == "pwrite1.tmpfs"
    assert row.base_insns_per_op == pytest.approx(1001.0)  # mean of the minima 1000 and 1002
    assert row.patched_insns_per_op == pytest.approx(951.0)
    assert row.change_pct == pytest.approx(-50.0 / 1001.0 * 100)
    assert row.spread_insns_per_op == pytest.approx(2.0)
    # Passes are taken from the same (fewest-instruction) round: each op adds a 4 KiB copy.
    assert row.base_passes_per_op == pytest.approx(1001.0 + 4096)
    assert row.passes_change_pct == pytest.approx(-50.0 / (1001.0 + 4096) * 100)
    assert row.predicted_change_pct is None
    assert NO_PREDICTION in report.notes
    out = json.loads(json.dumps(report.to_json()))
    assert set(out) >= {"kernel", "accel", "rows"}
    assert set(out["rows"][0]) >= {
        "workload",
        "base_insns_per_op",
        "patched_insns_per_op",
        "change_pct",
        "stddev_pct",
        "predicted_change_pct",
    }
    assert out["rows"][0]["predicted_change_pct"] is None
    table = render(report)
    assert "-5.0%" in table and "pwrite1.tmpfs.kernel_insns_per_op" in table
    assert "n/a" in table and "noise" in table


def test_report_leaves_out_a_workload_measured_on_one_side() -> None:
    report = compute(
        "6.12.0", "tcg", [_record({"write1.tmpfs": [10.0]})], [_record({"pwrite1.tmpfs": [9.0]})]
    )
    assert report.rows == []
    assert any("one kernel only" in n for n in report.notes)


# ---- runner, qemu, accel -----------------------------------------------------------------


def test_runner_statuses_and_logs(tmp_path: Path) -> None:
    runner = Runner(out=sys.stderr)
    ok = runner.run(
        "ok", [sys.executable, "-c", "print('hi')"], log=tmp_path / "ok.log", timeout=30
    )
    assert ok.status is Status.SUCCESS and (tmp_path / "ok.log").read_text() == "hi\n"
    bad = runner.run(
        "bad", [sys.executable, "-c", "raise SystemExit(3)"], log=tmp_path / "b", timeout=30
    )
    assert bad.status is Status.FAILURE and bad.detail == "exit status 3" and bad.log is not None
    hung = runner.run("hung", ["sleep", "30"], log=tmp_path / "h", timeout=0.2)
    assert hung.status is Status.TIMEOUT
    missing = runner.run("missing", [str(tmp_path / "nosuch")], log=tmp_path / "m", timeout=5)
    assert missing.status is Status.FAILURE
    assert "missing failure" in missing.describe()


def test_dry_run_prints_quoted_commands_and_runs_nothing(tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    with open(progress, "w") as out:
        runner = Runner(dry_run=True, out=out)
        res = runner.run("x", ["touch", str(tmp_path / "a b")], log=tmp_path / "l", timeout=5)
    assert res.status is Status.DRY_RUN
    assert f"$ touch '{tmp_path}/a b'" in progress.read_text()
    assert not (tmp_path / "a b").exists()


def test_qemu_command_line() -> None:
    argv = qemu_argv(QemuParams(), Path("/k"), Path("/i"), Path("/p.so"))
    joined = " ".join(argv)
    assert "-accel tcg" in joined and "-icount shift=0" in joined and "-smp 1" in joined
    assert "-plugin /p.so -d plugin" in joined and "-no-reboot" in joined
    assert "console=ttyS0" in argv[argv.index("-append") + 1]


def test_detect_accel(tmp_path: Path) -> None:
    dev = tmp_path / "kvm"
    mods = tmp_path / "module"
    mods.mkdir()
    assert detect_accel(mods, dev).kvm == "none"
    dev.touch()
    (mods / "kvm_pvm").mkdir()
    pvm = detect_accel(mods, dev)
    assert pvm.kvm == "pvm" and pvm.accel == "tcg" and "PVM" in pvm.note


def test_image_key_changes_with_each_input() -> None:
    key = image_key(b"cfg", None, "6.12.1")
    assert key == image_key(b"cfg", None, "6.12.1")
    assert (
        len(
            {
                key,
                image_key(b"cfg2", None, "6.12.1"),
                image_key(b"cfg", b"p", "6.12.1"),
                image_key(b"cfg", None, "6.12.2"),
            }
        )
        == 4
    )


# ---- the command line --------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lab", *argv])


def test_cli_check_names_missing_packages(capsys: pytest.CaptureFixture[str]) -> None:
    gone = [PACKAGES[0]]
    rc = cli.main(_args("--check"), cli.LabBackends(missing=lambda: gone))
    out = capsys.readouterr().out
    assert rc == cli.EXIT_SKIPPED
    assert f"missing   {PACKAGES[0].name}" in out
    assert f"apt-get install -y --no-install-recommends {PACKAGES[0].name}" in out
    assert cli.main(_args("--check"), cli.LabBackends(missing=lambda: [])) == cli.EXIT_OK


def test_cli_run_without_packages_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    gone = [Package("qemu-system-x86", "x")]
    rc = cli.main(_args(), cli.LabBackends(missing=lambda: gone))
    assert rc == cli.EXIT_SKIPPED
    assert "writepath lab --install" in capsys.readouterr().err


def test_cli_dry_run_lists_every_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(
        _args("--dry-run", "--workdir", str(tmp_path / "wd"), "--workloads", "pwrite1"),
        cli.LabBackends(missing=lambda: [], accel=_NO_KVM),
    )
    out = capsys.readouterr().out
    assert rc == cli.EXIT_OK
    for step in ("tar -xJf", "kconfig.sh", "make -C", "patch -p1", "gcc -static", "-plugin"):
        assert step in out, step
    assert out.count("qemu-system-x86_64") == 2 * cli.DEFAULT_REPEATS
    assert not (tmp_path / "wd").exists()


def test_cli_dry_run_full_adds_the_kvm_probe_and_the_semantics_boots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def pvm() -> AccelInfo:
        return AccelInfo("tcg", "pvm", "/dev/kvm is the software PVM module")

    rc = cli.main(
        _args("--dry-run", "--full", "--workdir", str(tmp_path / "wd"), "--workloads", "pwrite1"),
        cli.LabBackends(missing=lambda: [], accel=pvm),
    )
    out = capsys.readouterr().out
    assert rc == cli.EXIT_OK
    assert out.count("-icount") == 2 * cli.FULL_REPEATS
    assert "kvm-probe: $ qemu-system-x86_64 -accel kvm -cpu host" in out
    assert "mkfs.ext4" in out and out.count("semantics.cpio.gz -append") == 2
    assert not (tmp_path / "wd").exists()


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A dry-run runner: should a usage error slip through, nothing is built or booted.
    none = cli.LabBackends(runner=Runner(dry_run=True), missing=lambda: [])
    assert cli.main(_args("--workloads", "nosuch"), none) == cli.EXIT_ERROR
    assert cli.main(_args("--repeats", "0"), none) == cli.EXIT_ERROR
    assert cli.main(_args("--parse", "/nonexistent/writepath.log"), none) == cli.EXIT_ERROR
    assert "Traceback" not in capsys.readouterr().err


def test_cli_parse_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(_args("--parse", str(SAMPLE), "--json")) == cli.EXIT_OK
    (out,) = json.loads(capsys.readouterr().out)
    assert out["done"] is True and out["problems"] == []
    first = _sample_values(SAMPLE.read_text())[0]
    assert out["samples"][0]["kernel_insns"] == first[2]


class _FakeLab(Runner):
    """Plays every command's part: config writes a .config, make a bzImage, QEMU a boot log.

    The boot logs are the recorded sample with the plugin's counts scaled: patched boots count
    ``patched_per_mille`` of what base boots count, so the report's change is known in advance.
    """

    def __init__(self, patched_per_mille: int) -> None:
        super().__init__(out=sys.stderr)
        self.patched_per_mille = patched_per_mille
        self.commands: list[list[str]] = []
        self.applied = False

    def run(self, stage, argv, *, log, timeout, cwd=None, env=None):  # type: ignore[no-untyped-def]
        from writepath.lab.runner import StageResult

        self.commands.append(list(argv))
        log.parent.mkdir(parents=True, exist_ok=True)
        if stage.endswith("-probe"):
            return StageResult(stage, Status.SUCCESS if self.applied else Status.FAILURE, 0.0, log)
        if stage in ("patch", "unpatch"):
            self.applied = stage == "patch"
        elif stage == "config":
            obj = Path(argv[3])
            obj.mkdir(parents=True, exist_ok=True)
            (obj / ".config").write_text("CONFIG_64BIT=y\n")
        elif stage.startswith("build-"):
            boot_dir = Path(argv[3].removeprefix("O=")) / "arch" / "x86" / "boot"
            boot_dir.mkdir(parents=True, exist_ok=True)
            (boot_dir / "bzImage").write_bytes(stage.encode())
        elif stage in ("bench", "plugin"):
            Path(argv[argv.index("-o") + 1]).write_bytes(b"\x7fELF")
        elif stage.startswith("boot-"):
            scale = 1000 if "-base-" in stage else self.patched_per_mille
            text = re.sub(
                r"kernel_insns=(\d+)",
                lambda m: f"kernel_insns={int(m[1]) * scale // 1000}",
                SAMPLE.read_text(),
            )
            log.write_text(text)
        return StageResult(stage, Status.SUCCESS, 0.0, log)


def _NO_KVM() -> AccelInfo:
    return AccelInfo("tcg", "none", "no /dev/kvm: TCG only")


def _unpacked_workdir(tmp_path: Path, makefile: bool = True) -> tuple[Path, Path]:
    """A lab work folder whose 6.12 source counts as unpacked (with its Makefile's version, or
    none), and a stand-in busybox: (workdir, busybox)."""
    wd = tmp_path / "wd"
    tree = wd / "src" / "linux-source-6.12"
    tree.mkdir(parents=True)
    (tree / ".writepath-unpacked").touch()
    if makefile:
        (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\n")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF")
    return wd, busybox


def _no_predictor() -> tuple[None, str]:
    return None, "no cost model here"


def test_full_run_offline_with_fake_backends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd, busybox = _unpacked_workdir(tmp_path)
    fake = _FakeLab(patched_per_mille=950)
    backends = cli.LabBackends(
        runner=fake, missing=lambda: [], busybox=busybox, accel=_NO_KVM, predictor=_no_predictor
    )
    rc = cli.main(_args("--json", "--workdir", str(wd), "--repeats", "2"), backends)
    assert rc == cli.EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["kernel"] == "6.12.117" and out["accel"] == "tcg"
    assert out["accel_reason"] and out["throughput"]["status"] == "not measured"
    assert "semantics" not in out
    names = {r["workload"] for r in out["rows"]}
    assert names == {s.workload.name for s in parse_log(SAMPLE.read_text()).samples}
    for row in out["rows"]:
        assert row["change_pct"] == pytest.approx(-5.0, abs=0.01)
        assert row["predicted_change_pct"] is None
    assert any("no cost model here" in n for n in out["notes"])
    # Two boots per kernel, interleaved ABBA; the patch went in before the patched build.
    boots = [c for c in fake.commands if c[0] == "qemu-system-x86_64"]
    kernels = [c[c.index("-kernel") + 1].split("/")[-2].split("-")[0] for c in boots]
    assert kernels == ["base", "patched", "patched", "base"]
    # A second run reuses both images: no make at all.
    fake.commands.clear()
    assert cli.main(_args("--json", "--workdir", str(wd), "--repeats", "1"), backends) == 0
    assert not any(c[0] == "make" for c in fake.commands)


def test_failed_boot_names_the_step_and_keeps_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Panicking(_FakeLab):
        def run(self, stage, argv, *, log, timeout, cwd=None, env=None):  # type: ignore[no-untyped-def]
            res = super().run(stage, argv, log=log, timeout=timeout, cwd=cwd, env=env)
            if stage.startswith("boot-"):
                log.write_text("Kernel panic - not syncing: VFS\n")
            return res

    wd, busybox = _unpacked_workdir(tmp_path, makefile=False)
    fake = Panicking(patched_per_mille=1000)
    backends = cli.LabBackends(runner=fake, missing=lambda: [], busybox=busybox, accel=_NO_KVM)
    assert cli.main(_args("--workdir", str(wd)), backends) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "FAILED: boot-base-0 failure" in err and "Kernel panic" in err
    assert (wd / "logs").exists() and list((wd / "logs").glob("run-*/boot-0-base.log"))


def test_cli_install_dry_run_prints_apt_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = [Package("ccache", "x"), Package("busybox-static", "y")]
    backends = cli.LabBackends(runner=Runner(dry_run=True, out=sys.stdout), missing=lambda: gone)
    rc = cli.main(_args("--install", "--dry-run", "--workdir", str(tmp_path)), backends)
    out = capsys.readouterr().out
    assert rc == cli.EXIT_OK
    assert "$ apt-get update -q" in out
    assert "apt-get install -y --no-install-recommends ccache busybox-static" in out


# ---- predictions beside the measurement ---------------------------------------------------


def _rows_report() -> LabReport:
    report = LabReport("6.12.117", "tcg", notes=[NO_PREDICTION])
    for name, change in (
        ("pwrite1.tmpfs", -7.0),
        ("pwrite1-1B.tmpfs", -6.0),
        ("write1.ramfs", -5.0),
    ):
        report.rows.append(
            Row(
                name,
                100.0,
                100.0 + change,
                change,
                0.0,
                None,
                None,
                0.0,
                1,
                1,
                1.0,
                1.0,
                0.0,
                0.0,
                0.0,
            )
        )
    return report


def test_predictions_fill_rows_and_the_gap_in_points() -> None:
    report = _rows_report()
    attach_predictions(report, (), lambda name: {"pwrite1.tmpfs": -5.5, "write1.ramfs": -4.0}[name])
    by = {r.workload: r for r in report.rows}
    assert by["pwrite1.tmpfs"].predicted_change_pct == -5.5
    assert by["pwrite1.tmpfs"].predicted_delta_pp == pytest.approx(-1.5)
    assert by["write1.ramfs"].predicted_delta_pp == pytest.approx(-1.0)
    # The cost model's pwrite1 writes 4 KiB: the 1-byte row gets no borrowed number.
    assert by["pwrite1-1B.tmpfs"].predicted_change_pct is None
    assert NO_PREDICTION not in report.notes
    assert any("pwrite1-1B.tmpfs" in n and "4096" in n for n in report.notes)
    text = render(report)
    assert "-5.5%" in text and "n/a" in text and "Δpp" in text


@pytest.mark.parametrize(
    "predictor,why",
    [
        (lambda name: (_ for _ in ()).throw(KeyError(name)), "KeyError"),
        (lambda name: float("nan"), "nan"),
        (lambda name: "5%", "not a number"),
    ],
)
def test_a_failing_cost_model_is_na_with_one_line_why(predictor: Any, why: str) -> None:
    report = _rows_report()
    attach_predictions(report, (), predictor)
    assert all(r.predicted_change_pct is None for r in report.rows)
    notes = [n for n in report.notes if why in n]
    assert len(notes) == 2  # once per cost-model workload and filesystem, not per row
    assert "\n" not in notes[0]


def test_an_absent_cost_model_is_na(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    def no_module(name: str) -> Any:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", no_module)
    predictor, why = load_predictor()
    assert predictor is None and "ImportError" in why
    report = _rows_report()
    attach_predictions(report, (), predictor, why)
    assert all(r.predicted_change_pct is None for r in report.rows)
    assert any("ImportError" in n for n in report.notes)


# ---- the data files, for a checkout and a wheel ------------------------------------------


def test_every_data_file_is_package_data() -> None:
    from importlib import resources

    folder = resources.files("writepath.lab").joinpath("data")
    for name in data.DATA_FILES:
        assert folder.joinpath(name).is_file(), name
        assert data.data_file(name).read_bytes() == folder.joinpath(name).read_bytes()


# ---- the Python the guest runs ----------------------------------------------------------


def test_parse_ldd() -> None:
    text = (
        "\tlinux-vdso.so.1 (0x00007ffd)\n"
        "\tlibpython3.11.so.1.0 => /opt/py/lib/libpython3.11.so.1.0 (0x00007f61)\n"
        "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f61)\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f61)\n"
    )
    assert pyguest.parse_ldd(text) == [
        "/opt/py/lib/libpython3.11.so.1.0",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ]
    with pytest.raises(pyguest.GuestPythonError):
        pyguest.parse_ldd("\tlibffi.so.8 => not found\n")


def test_bytecode_zip_imports_without_sources(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "wpzip"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "inner.py").write_text("VALUE = 6 * 7\n")
    archive = tmp_path / "b.zip"
    archive.write_bytes(pyguest.bytecode_zip(pkg, prefix="wpzip/"))
    import zipfile

    assert sorted(zipfile.ZipFile(archive).namelist()) == ["wpzip/__init__.pyc", "wpzip/inner.pyc"]
    code = "import wpzip.inner, sys; sys.stdout.write(str(wpzip.inner.VALUE))"
    r = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PYTHONPATH": str(archive)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout == "42", r.stderr


def test_cpio_tree_makes_parents_and_refuses_repeats() -> None:
    tree = CpioTree()
    tree.add_file("usr/lib/python3.11/lib-dynload/x.so", b"abc", 0o755)
    tree.add_symlink("bin/sh", "busybox")
    blob = tree.archive()
    names = re.findall(rb"070701[0-9a-f]{104}([^\0]+)\0", blob)
    assert names[:4] == [
        b"usr",
        b"usr/lib",
        b"usr/lib/python3.11",
        b"usr/lib/python3.11/lib-dynload",
    ]
    assert b"bin" in names and names[-1] == b"TRAILER!!!"
    for bad in ("bin/sh", "/abs", "a/../b"):
        with pytest.raises(ValueError):
            tree.add_file(bad, b"")


# ---- the semantics replay --------------------------------------------------------------


def _catalogue(*names: str) -> list[Any]:
    from writepath.scenario import find_scenario, load_scenario

    return [load_scenario(find_scenario(n)) for n in names]


def _kernel_answer(size: int) -> bytes:
    """What a kernel answers for efault-beyond-eof-grows-file: EFAULT, the 4 KiB pattern page
    kept, and the file at ``size`` (the scenario's description: 4096 before, 8192 after)."""
    from writepath.oracle.child import encode_file
    from writepath.results import FileState
    from writepath.scenario import fill

    state = FileState(size, {0: fill("pattern", 4096)})
    return json.dumps(
        {
            "kind": "ok",
            "calls": [{"op": "pwrite", "ret": -1, "errno": 14, "signals": []}],
            "files": {"target": encode_file(state, [1 << 20])},
            "fstypes": {"target": "tmpfs"},
            "traces": None,
        }
    ).encode()


def _results(*records: dict[str, Any], done: bool = True) -> bytes:
    lines = [guest.BOOT_PREFIX + json.dumps({"release": "6.12.117", "pid": 30})]
    lines += [guest.RECORD_PREFIX + json.dumps(r) for r in records]
    if done:
        lines.append(guest.DONE_PREFIX + json.dumps({"scenarios": len(records)}))
    return "\r\n".join(lines).encode() + b"\r\n"


def _guest_record(name: str, raw: bytes | None, verdict: str = "ok") -> dict[str, Any]:
    encoded = None if raw is None else base64.b64encode(raw).decode()
    return {"name": name, "raw": encoded, "verdict": verdict, "evidence": ""}


def test_selection_keeps_single_task_scenarios_on_the_guest_filesystems() -> None:
    from writepath.scenario import load_catalogue

    catalogue = load_catalogue()
    sel = semantics.select_scenarios(catalogue)
    assert sel.scenarios and len(sel.scenarios) + len(sel.not_replayed) == len(catalogue)
    for s in sel.scenarios:
        assert s.single_task and {f.fs for f in s.files} <= {"tmpfs", "ramfs", "ext4"}
    assert "xfs" in sel.not_replayed["efault-beyond-eof-xfs-keeps-size"]


def test_the_efault_scenarios_tell_the_two_designs_apart() -> None:
    scenarios = _catalogue(
        "efault-beyond-eof-grows-file", "efault-beyond-eof-grows-file-ext4", "pwrite1-resident"
    )
    sensitive = semantics.design_sensitive(scenarios)
    assert set(sensitive) == {"efault-beyond-eof-grows-file", "efault-beyond-eof-grows-file-ext4"}
    assert "4096" in sensitive["efault-beyond-eof-grows-file"]


@pytest.mark.parametrize("kernel,size", [("base", 4096), ("patched", 8192)])
def test_each_kernel_agrees_with_its_design_and_not_the_other(kernel: str, size: int) -> None:
    (s,) = _catalogue("efault-beyond-eof-grows-file")
    sensitive = semantics.design_sensitive([s])
    replay = semantics.parse_results(_results(_guest_record(s.name, _kernel_answer(size))))
    assert replay.done and replay.release == "6.12.117" and not replay.problems
    judged = semantics.judge(kernel, [s], replay, sensitive)
    assert judged.counts == {"agree": 1} and judged.sided == [s.name]
    # The other kernel's answer differs from this kernel's design, on the file size.
    other = 8192 if size == 4096 else 4096
    replay = semantics.parse_results(_results(_guest_record(s.name, _kernel_answer(other))))
    judged = semantics.judge(kernel, [s], replay, sensitive)
    assert judged.counts == {"differ": 1}
    assert "size" in judged.findings[0][2]


def test_untrusted_guest_output_never_raises() -> None:
    (s,) = _catalogue("efault-beyond-eof-grows-file")
    good = _guest_record(s.name, _kernel_answer(4096))
    blob = _results(
        good,
        {**good, "raw": "not base64!"},
        {**good, "name": "../../etc/passwd"},
        {**good, "verdict": "fine"},
        {**good, "extra": 1},
        {**good, "name": s.name + "\n"},
        {**good, "raw": None},  # "ok" on the guest's word, without the child's answer
        done=False,
    )
    blob += b"wp-sem [1, 2]\nwp-sem {\nrandom kernel noise\n\xff\xfe\n" + b"wp-sem " + b"[" * 100000
    replay = semantics.parse_results(blob)
    assert list(replay.records) == [s.name] and not replay.done
    assert len(replay.problems) >= 9
    # A duplicate answer is refused; a malformed kernel answer is the oracle's error verdict.
    replay = semantics.parse_results(_results(good, good))
    assert any("twice" in p for p in replay.problems)
    bad = _guest_record(s.name, b'{"kind": "ok", "calls": []}')
    judged = semantics.judge("base", [s], semantics.parse_results(_results(bad)), {})
    assert judged.counts == {"error": 1} and "malformed" in judged.findings[0][2]
    # No answer at all is an error too, and an unfinished replay is a problem.
    judged = semantics.judge("base", [s], semantics.parse_results(b""), {})
    assert judged.counts == {"error": 1} and judged.problems
    # Guest text reaches the terminal with its control characters replaced.
    rogue = guest.BOOT_PREFIX.encode() + b'{"release": "6.12\\u001b[2J"}\n'
    assert semantics.parse_results(rogue).release == "6.12?[2J"
    # The size bound.
    huge = semantics.parse_results(b"x" * (semantics.MAX_RESULTS_BYTES + 10))
    assert any("cut" in p for p in huge.problems)


def test_semantics_init_mounts_what_the_oracle_pool_looks_for() -> None:
    text = semantics.init_script()
    assert "mount -t tmpfs writepath-shm /dev/shm" in text
    assert "mount -t ext4 /dev/ram0 /tmp" in text
    assert "-m writepath.lab.guest /wp/scenarios /dev/ttyS1" in text
    assert "PYTHONHOME=/usr" in text and text.rstrip().endswith("reboot -f")


def test_semantics_run_offline_with_fake_backends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--semantics end to end with QEMU played by the fake: the base kernel answers as 6.12,
    the patched one answers with the base kernel's file size (a patch that did nothing)."""
    (s,) = _catalogue("efault-beyond-eof-grows-file")
    monkeypatch.setattr(semantics, "guest_python", lambda cache=None: [])

    class Guests(_FakeLab):
        def run(self, stage, argv, *, log, timeout, cwd=None, env=None):  # type: ignore[no-untyped-def]
            res = super().run(stage, argv, log=log, timeout=timeout, cwd=cwd, env=env)
            if stage.startswith("semantics-"):
                out = Path(argv[argv.index("-serial", argv.index("-serial") + 1) + 1][5:])
                out.write_bytes(_results(_guest_record(s.name, _kernel_answer(4096))))
            return res

    wd, busybox = _unpacked_workdir(tmp_path)
    fake = Guests(patched_per_mille=1000)
    backends = cli.LabBackends(
        runner=fake, missing=lambda: [], busybox=busybox, accel=_NO_KVM, catalogue=[s]
    )
    rc = cli.main(_args("--semantics", "--json", "--workdir", str(wd)), backends)
    assert rc == cli.EXIT_DIFFER
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == []
    sem = out["semantics"]
    assert sem["scenarios"] == 1
    assert sem["kernels"]["base"]["agree"] == 1 and sem["kernels"]["base"]["design"] == "v6.13"
    assert sem["kernels"]["patched"]["differ"] == 1
    assert sem["kernels"]["base"]["design_sensitive_confirmed"] == [s.name]
    assert not any(c[0] == "qemu-system-x86_64" and "-icount" in c for c in fake.commands)
    assert (wd / "guest" / "semantics.cpio.gz").exists()


def test_semantics_without_a_catalogue_is_a_skip_with_the_reason(tmp_path: Path) -> None:
    wd = cli.Workdir(tmp_path / "wd")
    run = semantics.run_semantics(Runner(dry_run=True), wd, {}, tmp_path / "busybox", [])
    assert run.stage.status is Status.SKIPPED and "scenarios/" in run.stage.detail
    assert run.report is None


def test_what_the_guest_imports_needs_the_standard_library_only() -> None:
    """The guest has the standard library and writepath's sources, nothing else (guest.py):
    the modules guest.main() imports, and the model they pull in, import under ``python -S``
    (no site-packages) with every third-party name blocked."""
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(src)!r})\n"
        "for name in ('rich', 'mypy_extensions', 'mfusepy'):\n"
        "    sys.modules[name] = None\n"
        "import writepath.lab.guest, writepath.oracle, writepath.mounts, writepath.results\n"
        "import writepath.scenario, writepath.run\n"
        "sys.stdout.write('ok')\n"
    )
    r = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert r.stdout == "ok", r.stderr
