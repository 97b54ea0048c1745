"""QEMU for the lab: what the machine offers (KVM or not) and the command line, as data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AccelInfo:
    """What hardware virtualisation the machine offers, and what the lab uses."""

    accel: str  # what the lab uses: always "tcg" for path length (the plugin needs TCG)
    kvm: str  # "hardware", "pvm" (software, stock kernels do not boot), or "none"
    note: str


def detect_accel(
    sys_module: Path = Path("/sys/module"), dev_kvm: Path = Path("/dev/kvm")
) -> AccelInfo:
    """Look at /dev/kvm and the loaded kvm modules; path length is counted under TCG anyway.

    Instruction counts come from a TCG plugin, so they need TCG whatever the machine offers.
    Throughput under KVM (``-cpu host``) is not measured yet; the note says so.
    """
    if not dev_kvm.exists():
        return AccelInfo("tcg", "none", "no /dev/kvm: TCG only")
    if (sys_module / "kvm_pvm").exists():
        return AccelInfo(
            "tcg",
            "pvm",
            "/dev/kvm is the software PVM module, on which stock kernels do not boot: TCG",
        )
    if (sys_module / "kvm_intel").exists() or (sys_module / "kvm_amd").exists():
        usable = os.access(dev_kvm, os.R_OK | os.W_OK)
        return AccelInfo(
            "tcg",
            "hardware" if usable else "none",
            "hardware KVM present; the lab counts path length under TCG and does not yet "
            "measure KVM throughput",
        )
    return AccelInfo("tcg", "none", "/dev/kvm present but no known kvm module: TCG")


@dataclass(frozen=True)
class QemuParams:
    """The guest machine. ``-icount shift=0`` makes one guest instruction one virtual ns, so the
    guest's timer interrupts fall at the same instruction in every boot of the same kernel."""

    binary: str = "qemu-system-x86_64"
    accel: str = "tcg"
    #: TCG's "max" CPU has SMAP, so STAC/CLAC run as on the 0day's Xeons.
    cpu: str = "max"
    #: Enough for the initramfs and 1 MiB files; more only lengthens the boot's memory setup.
    memory_mb: int = 64
    icount: str = "shift=0,sleep=off"
    #: panic=-1 and reboot=t: any end of the guest becomes a reset, which -no-reboot turns into
    #: QEMU's exit. lpj= skips the delay-loop calibration, which spins for ticks under TCG.
    append: str = "console=ttyS0 panic=-1 reboot=t loglevel=5 lpj=1000000"


def _boot_argv(
    params: QemuParams,
    accel: str,
    cpu: str,
    memory_mb: int,
    kernel: Path,
    initrd: Path,
    counting: Sequence[str] = (),
    more_serial: Sequence[str] = (),
) -> list[str]:
    """One single-CPU guest booting ``kernel`` with ``initrd``, its console on stdio, exiting
    on reset; ``counting`` adds the TCG counting options, ``more_serial`` a second port."""
    return [
        params.binary,
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-smp",
        "1",
        "-m",
        str(memory_mb),
        *counting,
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        params.append,
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        *more_serial,
        "-no-reboot",
    ]


def qemu_argv(params: QemuParams, kernel: Path, initrd: Path, plugin: Path) -> list[str]:
    counting = [
        "-icount",
        params.icount,
        "-plugin",
        str(plugin),
        # qemu_plugin_outs() writes to QEMU's log, which is only open for "-d plugin"; it goes to
        # stderr, which the lab merges with the serial console into one log, in order.
        "-d",
        "plugin",
    ]
    return _boot_argv(
        params, params.accel, params.cpu, params.memory_mb, kernel, initrd, counting=counting
    )


#: A stock kernel under working KVM reaches the guest's first line in a second or two; a PVM
#: /dev/kvm never gets there. The probe gives it this long.
KVM_PROBE_TIMEOUT = 30.0


def kvm_probe_argv(params: QemuParams, kernel: Path, initrd: Path) -> list[str]:
    """Boot ``kernel`` under KVM with ``-cpu host`` (no plugin, no -icount: those are TCG's)."""
    return _boot_argv(params, "kvm", "host", params.memory_mb, kernel, initrd)


def semantics_argv(
    params: QemuParams, kernel: Path, initrd: Path, results: Path, memory_mb: int
) -> list[str]:
    """The semantics guest: TCG without -icount or plugin (nothing is counted), more memory,
    and a second serial port whose output (the replay's records) goes to ``results``."""
    return _boot_argv(
        params,
        "tcg",
        params.cpu,
        memory_mb,
        kernel,
        initrd,
        more_serial=["-serial", f"file:{results}"],
    )
