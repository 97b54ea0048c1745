"""The lab's stages: unpack, configure, build, guest, boot. Each takes a request, returns a result.

One kernel tree and one object directory serve both kernels: the base is built from the tree as
shipped, then the project's patch is applied in place and the patched kernel is rebuilt, which
recompiles only mm/filemap.c (ccache keeps the rest across work-directory wipes and brings the
base back cheaply after the patch is reversed). Built images are kept under ``images/`` keyed by
the hash of the final .config, the patch and the tree's version, so a second ``writepath lab``
boots without building.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from writepath.lab import data
from writepath.lab.initramfs import GuestPlan, build_initramfs
from writepath.lab.parse import BootRecord, parse_log
from writepath.lab.qemu import QemuParams, qemu_argv
from writepath.lab.runner import Runner, StageResult, Status

SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
TREE_NAME = "linux-source-6.12"
BUSYBOX = Path("/bin/busybox")

#: Budgets, enforced by the parent (the Runner kills the child's process group).
UNPACK_TIMEOUT = 600.0
CONFIG_TIMEOUT = 300.0
#: A cold build took about 3.5 min on 2 idle cores; leave room for a busy machine.
BUILD_TIMEOUT = 3600.0
GUEST_TOOL_TIMEOUT = 120.0
#: A boot with every workload takes seconds under TCG; a hung guest is killed long before CI's.
BOOT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Workdir:
    """Everything the lab writes lives under one directory."""

    root: Path

    @property
    def tree(self) -> Path:
        return self.root / "src" / TREE_NAME

    @property
    def obj(self) -> Path:
        return self.root / "build" / "obj"

    @property
    def ccache(self) -> Path:
        return self.root / "ccache"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def guest(self) -> Path:
        return self.root / "guest"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


@dataclass(frozen=True)
class Variant:
    name: str  # "base" or "patched"
    patch: Path | None


# ---- unpack -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnpackResult:
    stage: StageResult
    tree: Path


#: Written into the tree once tar has finished: a tree without it is a partial unpack.
UNPACKED_STAMP = ".writepath-unpacked"


def unpack(runner: Runner, wd: Workdir, tarball: Path = SOURCE_TARBALL) -> UnpackResult:
    t0 = time.monotonic()
    stamp = wd.tree / UNPACKED_STAMP
    if stamp.exists():
        runner.say(f"unpack: {wd.tree} is there")
        return UnpackResult(StageResult("unpack", Status.SUCCESS, 0.0), wd.tree)
    if not tarball.exists() and not runner.dry_run:
        return UnpackResult(
            StageResult("unpack", Status.SKIPPED, 0.0, detail=f"{tarball} missing"), wd.tree
        )
    if wd.tree.exists():
        runner.say(f"unpack: removing the partial tree {wd.tree}")
        if not runner.dry_run:
            shutil.rmtree(wd.tree)
    if not runner.dry_run:
        wd.tree.parent.mkdir(parents=True, exist_ok=True)
    res = runner.run(
        "unpack",
        ["tar", "-xJf", str(tarball), "-C", str(wd.tree.parent)],
        log=wd.logs / "unpack.log",
        timeout=UNPACK_TIMEOUT,
    )
    if res.status is Status.SUCCESS:
        stamp.write_text(f"{tarball}\n")
    return UnpackResult(_since(res, t0), wd.tree)


def _since(res: StageResult, t0: float) -> StageResult:
    return StageResult(res.stage, res.status, time.monotonic() - t0, res.log, res.detail)


# ---- patch state ---------------------------------------------------------------------------


def set_patch_state(runner: Runner, wd: Workdir, patch: Path, applied: bool) -> StageResult:
    """Apply or reverse ``patch`` in the tree, whichever brings it to the wanted state.

    The tree's state is read from ``patch --dry-run`` rather than remembered, so an interrupted
    run leaves nothing to clean up by hand.
    """
    stage = "patch" if applied else "unpatch"
    if runner.dry_run:
        flags = [] if applied else ["-R"]
        return runner.run(
            stage,
            ["patch", "-p1", "-N", *flags, "-i", str(patch)],
            log=wd.logs / f"{stage}.log",
            timeout=60,
            cwd=wd.tree,
        )
    probe = runner.run(
        f"{stage}-probe",
        ["patch", "-p1", "-R", "--dry-run", "-f", "-s", "-i", str(patch)],
        log=wd.logs / f"{stage}-probe.log",
        timeout=60,
        cwd=wd.tree,
    )
    is_applied = probe.status is Status.SUCCESS
    if is_applied == applied:
        return StageResult(stage, Status.SUCCESS, probe.elapsed, detail="already so")
    flags = [] if applied else ["-R"]
    return runner.run(
        stage,
        ["patch", "-p1", "-N", *flags, "-i", str(patch)],
        log=wd.logs / f"{stage}.log",
        timeout=60,
        cwd=wd.tree,
    )


# ---- configure -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigResult:
    stage: StageResult
    config: Path


def configure(runner: Runner, wd: Workdir) -> ConfigResult:
    script = data.data_file(data.KCONFIG_SCRIPT)
    res = runner.run(
        "config",
        ["sh", str(script), str(wd.tree), str(wd.obj)],
        log=wd.logs / "config.log",
        timeout=CONFIG_TIMEOUT,
    )
    return ConfigResult(res, wd.obj / ".config")


def tree_version(tree: Path) -> str:
    """``VERSION.PATCHLEVEL.SUBLEVEL`` from the tree's Makefile ("unknown" if unreadable)."""
    try:
        head = (tree / "Makefile").read_text(errors="replace")[:2000]
    except OSError:
        return "unknown"
    parts = []
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        m = re.search(rf"^{key} = (\d+)", head, re.MULTILINE)
        parts.append(m.group(1) if m else "?")
    return ".".join(parts)


def image_key(config: bytes, patch: bytes | None, version: str) -> str:
    """The cache key of a built image: what decides its content."""
    h = hashlib.sha256()
    for part in (version.encode(), config, patch if patch is not None else b"<no patch>"):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:20]


# ---- build ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    stage: StageResult
    image: Path
    cached: bool


def build_kernel(runner: Runner, wd: Workdir, variant: Variant, jobs: int) -> BuildResult:
    """Bring the tree to the variant's state, configure, and build (or reuse) its bzImage."""
    stage = f"build-{variant.name}"
    t0 = time.monotonic()
    if variant.patch is not None:
        state = set_patch_state(runner, wd, variant.patch, applied=True)
    else:
        patch = data.data_file(data.PATCH)
        state = set_patch_state(runner, wd, patch, applied=False)
    if not state.ok:
        return BuildResult(state, wd.images, False)
    cfg = configure(runner, wd)
    if not cfg.stage.ok:
        return BuildResult(cfg.stage, wd.images, False)
    if runner.dry_run:
        key = "DRYRUN"
    else:
        patch_bytes = variant.patch.read_bytes() if variant.patch is not None else None
        key = image_key(cfg.config.read_bytes(), patch_bytes, tree_version(wd.tree))
    image = wd.images / f"{variant.name}-{key}" / "bzImage"
    if image.exists():
        runner.say(f"{stage}: cached image {image}")
        return BuildResult(StageResult(stage, Status.SUCCESS, time.monotonic() - t0), image, True)
    env = {"CCACHE_DIR": str(wd.ccache), "CCACHE_BASEDIR": str(wd.root)}
    res = runner.run(
        stage,
        [
            "make",
            "-C",
            str(wd.tree),
            f"O={wd.obj}",
            "ARCH=x86_64",
            "CC=ccache gcc",
            f"-j{jobs}",
            "bzImage",
        ],
        log=wd.logs / f"{stage}.log",
        timeout=BUILD_TIMEOUT,
        env=env,
    )
    if not res.ok:
        return BuildResult(_since(res, t0), image, False)
    if not runner.dry_run:
        image.parent.mkdir(parents=True, exist_ok=True)
        built = wd.obj / "arch" / "x86" / "boot" / "bzImage"
        tmp = image.with_suffix(".tmp")
        tmp.write_bytes(built.read_bytes())
        tmp.replace(image)
        (image.parent / "config").write_bytes(cfg.config.read_bytes())
    return BuildResult(_since(res, t0), image, False)


# ---- guest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestResult:
    stage: StageResult
    bench: Path
    plugin: Path
    initramfs: Path


def build_guest(
    runner: Runner, wd: Workdir, plan: GuestPlan, busybox: Path = BUSYBOX
) -> GuestResult:
    """The static benchmark, the TCG plugin and the initramfs."""
    t0 = time.monotonic()
    bench = wd.guest / "bench"
    plugin = wd.guest / "wp_insns.so"
    initramfs = wd.guest / "initramfs.cpio"
    if not runner.dry_run:
        wd.guest.mkdir(parents=True, exist_ok=True)
    steps = [
        (
            "bench",
            [
                "gcc",
                "-static",
                "-O2",
                "-Wall",
                "-o",
                str(bench),
                str(data.data_file(data.BENCH_SOURCE)),
            ],
        ),
        (
            "plugin",
            [
                "gcc",
                "-shared",
                "-fPIC",
                "-O2",
                "-Wall",
                "-o",
                str(plugin),
                str(data.data_file(data.PLUGIN_SOURCE)),
            ],
        ),
    ]
    for name, argv in steps:
        res = runner.run(name, argv, log=wd.logs / f"{name}.log", timeout=GUEST_TOOL_TIMEOUT)
        if not res.ok:
            return GuestResult(_since(res, t0), bench, plugin, initramfs)
    runner.say(
        f"initramfs: writing {initramfs} ({len(plan.workloads)} workloads, "
        f"{plan.ops} ops after {plan.warmup} warm-up)"
    )
    if not runner.dry_run:
        if not busybox.exists():
            return GuestResult(
                StageResult("initramfs", Status.SKIPPED, 0.0, detail=f"{busybox} missing"),
                bench,
                plugin,
                initramfs,
            )
        initramfs.write_bytes(build_initramfs(plan, bench, busybox))
    return GuestResult(
        StageResult("guest", Status.SUCCESS, time.monotonic() - t0), bench, plugin, initramfs
    )


# ---- boot ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootRequest:
    variant: str
    repeat: int
    image: Path
    guest: GuestResult
    params: QemuParams
    log: Path


@dataclass(frozen=True)
class BootResult:
    stage: StageResult
    record: BootRecord


def boot(runner: Runner, req: BootRequest) -> BootResult:
    stage = f"boot-{req.variant}-{req.repeat}"
    argv = qemu_argv(req.params, req.image, req.guest.initramfs, req.guest.plugin)
    res = runner.run(stage, argv, log=req.log, timeout=BOOT_TIMEOUT)
    if runner.dry_run:
        return BootResult(res, BootRecord())
    try:
        record = parse_log(req.log.read_text(errors="replace"))
    except OSError as e:
        return BootResult(
            StageResult(stage, Status.FAILURE, res.elapsed, req.log, str(e)), BootRecord()
        )
    if res.ok and not record.ok:
        why = "; ".join(record.problems) or "the guest did not finish its runs"
        res = StageResult(stage, Status.FAILURE, res.elapsed, req.log, why)
    return BootResult(res, record)
