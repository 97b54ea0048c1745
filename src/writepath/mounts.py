"""Directories on real filesystems of each type, for the oracle.

tmpfs is ``/dev/shm``; ext4 is a temporary directory on an ext4 mount of this machine (or a loop
image made with mkfs.ext4); xfs is a loop image made with mkfs.xfs (Debian's xfsprogs); ramfs is
mounted on a temporary directory. Loop images and mounts need root. What cannot be had is
reported with the reason, never faked with another filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType


def fs_type_of(path: str) -> str:
    """The type of the filesystem holding ``path`` (from /proc/self/mountinfo)."""
    best, best_type = "", "?"
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mount_point = parts[4]
            fstype = parts[parts.index("-") + 1]
            if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(
                mount_point
            ) >= len(best):
                best, best_type = mount_point, fstype
    return best_type


class Unavailable(Exception):
    """This machine cannot provide that filesystem."""


class FsPool(AbstractContextManager["FsPool"]):
    """Hands out one scratch directory per filesystem type and cleans everything up."""

    def __init__(self, override: str | None = None) -> None:
        self.override = override
        self.dirs: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        self._cleanup: list[list[str]] = []
        self._tmpdirs: list[str] = []

    def directory(self, fs: str) -> str:
        if self.override:
            return self.override
        if fs in self.problems:
            raise Unavailable(self.problems[fs])
        if fs not in self.dirs:
            try:
                self.dirs[fs] = self._make(fs)
            except Unavailable as e:
                self.problems[fs] = str(e)
                raise
        return self.dirs[fs]

    def _tmp(self, parent: str | None = None) -> str:
        d = tempfile.mkdtemp(prefix="writepath-", dir=parent)
        self._tmpdirs.append(d)
        return d

    def _make(self, fs: str) -> str:
        if fs == "tmpfs":
            if os.path.isdir("/dev/shm") and fs_type_of("/dev/shm") == "tmpfs":
                return self._tmp("/dev/shm")
            return self._mount("tmpfs", ["-t", "tmpfs", "tmpfs"])
        if fs == "ext4":
            for candidate in (tempfile.gettempdir(), "/var/tmp", os.getcwd()):
                if os.path.isdir(candidate) and fs_type_of(candidate) == "ext4":
                    return self._tmp(candidate)
            return self._loop("ext4", ["mkfs.ext4", "-q", "-F", "-b", "4096"], 64)
        if fs == "xfs":
            return self._loop("xfs", ["mkfs.xfs", "-q", "-f"], 320)
        if fs == "ramfs":
            return self._mount("ramfs", ["-t", "ramfs", "ramfs"])
        raise Unavailable(f"unknown filesystem {fs}")

    def _need_root(self, what: str) -> None:
        if os.geteuid() != 0:
            raise Unavailable(f"{what} needs root")

    def _mount(self, fs: str, args: list[str]) -> str:
        self._need_root(f"mounting {fs}")
        d = self._tmp()
        r = subprocess.run(["mount", *args, d], capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"mount -t {fs} failed: {r.stderr.strip()}")
        self._cleanup.append(["umount", d])
        return d

    def _loop(self, fs: str, mkfs: list[str], mib: int) -> str:
        self._need_root(f"a loop-mounted {fs}")
        if not shutil.which(mkfs[0]):
            package = "xfsprogs" if fs == "xfs" else "e2fsprogs"
            raise Unavailable(f"{mkfs[0]} is not installed (Debian package {package})")
        work = self._tmp()
        image = str(Path(work) / f"{fs}.img")
        with open(image, "wb") as f:
            f.truncate(mib << 20)
        r = subprocess.run([*mkfs, image], capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"{mkfs[0]} failed: {r.stderr.strip()}")
        mnt = str(Path(work) / "mnt")
        os.mkdir(mnt)
        r = subprocess.run(["mount", "-o", "loop", image, mnt], capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"loop mount of {fs} failed: {r.stderr.strip()}")
        self._cleanup.append(["umount", mnt])
        return mnt

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for cmd in reversed(self._cleanup):
            subprocess.run(cmd, capture_output=True)
        for d in reversed(self._tmpdirs):
            shutil.rmtree(d, ignore_errors=True)
