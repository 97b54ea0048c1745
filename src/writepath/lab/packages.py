"""The Debian packages the lab needs and why: ``--check`` lists, ``--install`` adds them.

Nothing is installed behind the user's back: the default run stops at a missing package with
exit status 3 and the command that would install it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    name: str
    why: str


#: Debian 12 (bookworm) package names. Debian ships QEMU's plugin support in the emulator but no
#: package carries the plugin header, so wp_insns.c declares the API subset it uses itself.
PACKAGES: tuple[Package, ...] = (
    Package("qemu-system-x86", "qemu-system-x86_64: boots the guests under TCG, loads the plugin"),
    Package("linux-source-6.12", "the 6.12 kernel tree, which still has the pre-patch loop"),
    Package("busybox-static", "the initramfs's shell and mount"),
    Package("build-essential", "gcc, make and the static C library (benchmark, kernel)"),
    Package("flex", "the kernel's Kconfig parser"),
    Package("bison", "the kernel's Kconfig parser"),
    Package("bc", "kernel build: timeconst.h"),
    Package("libelf-dev", "kernel build: objtool"),
    Package("xz-utils", "unpacking linux-source-6.12.tar.xz"),
    Package("patch", "applying the project's patch to the 6.12 tree"),
    Package("ccache", "the patched build recompiles only what the patch changed"),
    Package("e2fsprogs", "mkfs.ext4: the semantics guest's ext4 image"),
    Package("binutils", "strip: the guest's copy of libpython without debug sections"),
)


def installed(name: str) -> bool:
    """Whether dpkg says ``name`` is installed (False where there is no dpkg)."""
    if shutil.which("dpkg-query") is None:
        return False
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0 and proc.stdout.strip().endswith("install ok installed")


def missing(packages: tuple[Package, ...] = PACKAGES) -> list[Package]:
    return [p for p in packages if not installed(p.name)]


def install_argv(packages: list[Package]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *(p.name for p in packages)]
