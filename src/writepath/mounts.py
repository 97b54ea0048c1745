"""Directories on real filesystems of each type, for the oracle, and nothing left behind.

tmpfs is a directory in ``/dev/shm``; ext4 a temporary directory on an ext4 mount of this machine
(or a loop image made with mkfs.ext4); xfs a loop image made with mkfs.xfs (Debian's xfsprogs);
ramfs a mount on a temporary directory. ext2, ext4-nodelalloc and ext4-journal are loop images
made with mkfs.ext2/mkfs.ext4 (e2fsprogs), mounted ``-t ext2``, ``-o nodelalloc`` and
``-o data=journal``; btrfs a loop image made with mkfs.btrfs (Debian's btrfs-progs); tmpfs-huge a
tmpfs mounted ``-o huge=always``; fuse the project's passthrough daemon (``writepath.fusedaemon``,
needing mfusepy and Debian's fuse3) serving a backing directory, run in a process of its own
whose log of WRITE requests is ``fuse_write_log()``. Loop images and mounts need root. What
cannot be had is reported with the reason, never faked with another filesystem.

Leaving nothing behind, even when the process is killed:
- As root, the first pool of a process moves the process into a mount namespace of its own with
  private propagation, so every mount it (or a child) makes is invisible to the rest of the
  machine and is torn down by the kernel when the last process in the namespace exits; loop
  devices set up by ``mount -o loop`` are autoclear and are released with their mount.
- The fuse daemon is a child of the pool's process, in the same namespace; it gets SIGTERM when
  that process dies (PR_SET_PDEATHSIG) and unmounts, and the pool ends it, by its pid, on exit.
- Every directory the pool makes is named ``writepath-run.*`` and holds an owner file that the
  pool keeps flock()ed while it lives. A later pool removes such a directory only when it is
  owned by the same user, holds that owner file, and the lock can be taken — i.e. the process
  that made it is gone. Nothing is ever removed by its name alone.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

#: Prefix of every directory a pool makes; the owner file inside marks it as the pool's.
DIR_PREFIX = "writepath-run."
OWNER_FILE = ".writepath-owner"

#: Whether this process already has a private mount namespace (made once, on first need).
_private_namespace: bool | None = None


def fs_type_of(path: str) -> str:
    """The type of the filesystem holding ``path`` (from /proc/self/mountinfo)."""
    best, best_type = "", "?"
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mount_point = _unescape(parts[4])
            fstype = parts[parts.index("-") + 1]
            if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(
                mount_point
            ) >= len(best):
                best, best_type = mount_point, fstype
    return best_type


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _mounts_below(path: str) -> list[str]:
    """Mount points strictly inside ``path``, deepest first."""
    prefix = path.rstrip("/") + "/"
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount_point = _unescape(line.split()[4])
            if mount_point.startswith(prefix):
                found.append(mount_point)
    return sorted(found, key=len, reverse=True)


def enter_private_mount_namespace() -> bool:
    """Move this process into its own mount namespace (root only); True if it is in one.

    Done once per process. unshare(CLONE_NEWNS) refuses a process with other threads (EINVAL);
    then mounts stay in the shared namespace and only the owner-file cleanup protects them.
    """
    global _private_namespace
    if _private_namespace is None:
        _private_namespace = False
        if os.geteuid() == 0:
            from writepath.oracle.libc import LibcError, unshare_mount_namespace

            with contextlib.suppress(LibcError):
                unshare_mount_namespace()
                _private_namespace = True
    return _private_namespace


def scratch_parents() -> list[str]:
    """Where pools make their directories: the temporary directory, /var/tmp, /dev/shm."""
    out: list[str] = []
    for d in (tempfile.gettempdir(), "/var/tmp", "/dev/shm"):
        if os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def reap_leftovers(parents: list[str] | None = None) -> list[str]:
    """Remove what pools of dead processes left behind; the directories removed.

    A directory qualifies only if its name starts with DIR_PREFIX, it is a real directory owned
    by this user, it holds an OWNER_FILE, and that file's lock is free (its owner is gone).
    """
    removed: list[str] = []
    for parent in parents if parents is not None else scratch_parents():
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith(DIR_PREFIX):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not entry.is_dir(follow_symlinks=False) or st.st_uid != os.geteuid():
                continue
            try:
                fd = os.open(
                    os.path.join(entry.path, OWNER_FILE),
                    os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                )
            except OSError:
                continue  # no owner file: not a pool's directory
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its pool is alive
                _remove_dir(entry.path)
                removed.append(entry.path)
            finally:
                os.close(fd)
    return removed


def _remove_dir(path: str) -> None:
    """Unmount whatever is mounted below ``path``, detach its loop images, remove the trace
    instances its pool registered, remove it."""
    try:
        with open(os.path.join(path, TRACE_INSTANCES_FILE)) as f:
            for line in f:
                _remove_trace_instance(line.strip())
    except OSError:
        pass
    for mount_point in _mounts_below(path):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)
    for image in Path(path).glob("*.img"):
        r = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            device = line.split(":", 1)[0]
            if device.startswith("/dev/loop"):
                subprocess.run(["losetup", "-d", device], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


#: File in a pool's control directory listing the trace instances it made, one path a line.
TRACE_INSTANCES_FILE = "trace-instances"
#: Trace instances a pool makes are named with this prefix (oracle/tracing.py).
TRACE_INSTANCE_PREFIX = "writepath-"


def _remove_trace_instance(path: str) -> None:
    """rmdir a registered trace instance, if it is one of ours by place and name."""
    parent, name = os.path.split(path)
    if os.path.basename(parent) == "instances" and name.startswith(TRACE_INSTANCE_PREFIX):
        with contextlib.suppress(OSError), open(os.path.join(path, "tracing_on"), "w") as f:
            f.write("0")
        with contextlib.suppress(OSError):
            os.rmdir(path)


class Unavailable(Exception):
    """This machine cannot provide that filesystem."""


class FsPool(AbstractContextManager["FsPool"]):
    """Hands out one scratch directory per filesystem type and cleans everything up.

    Enter it before starting threads (a progress bar, say): a private mount namespace can only
    be made while the process has one thread.
    """

    def __init__(self, override: str | None = None) -> None:
        self.override = override
        self.dirs: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        self._mounts: list[str] = []
        self._tmpdirs: list[str] = []
        self._locks: list[int] = []
        self._control: str | None = None
        self._daemons: list[subprocess.Popen[bytes]] = []
        self._fuse_logs: dict[str, str] = {}

    def fuse_write_log(self) -> str | None:
        """The file the fuse daemon appends its WRITE requests to, if fuse is mounted."""
        return self._fuse_logs.get("fuse")

    def __enter__(self) -> FsPool:
        reap_leftovers()
        if os.geteuid() == 0:
            enter_private_mount_namespace()
        return self

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

    def register_trace_instance(self, path: str) -> None:
        """Note a trace instance this pool made, so a later pool removes it if this process
        dies before removing it itself."""
        if self._control is None:
            self._control = self._tmp()
        with open(os.path.join(self._control, TRACE_INSTANCES_FILE), "a") as f:
            f.write(path + "\n")

    def _tmp(self, parent: str | None = None) -> str:
        d = tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parent)
        self._tmpdirs.append(d)
        fd = os.open(
            os.path.join(d, OWNER_FILE),
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            0o600,
        )
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"%d\n" % os.getpid())
        self._locks.append(fd)
        return d

    def _make(self, fs: str) -> str:
        if fs == "tmpfs":
            if os.path.isdir("/dev/shm") and fs_type_of("/dev/shm") == "tmpfs":
                return self._tmp("/dev/shm")
            return self._mount("tmpfs", ["-t", "tmpfs", "tmpfs"])
        if fs == "ext4":
            for candidate in (tempfile.gettempdir(), "/var/tmp"):
                if os.path.isdir(candidate) and fs_type_of(candidate) == "ext4":
                    return self._tmp(candidate)
            return self._loop("ext4", ["mkfs.ext4", "-q", "-F", "-b", "4096"], 64)
        if fs == "xfs":
            return self._loop("xfs", ["mkfs.xfs", "-q", "-f"], 320)
        if fs == "ramfs":
            return self._mount("ramfs", ["-t", "ramfs", "ramfs"])
        if fs == "ext2":
            return self._loop("ext2", ["mkfs.ext2", "-q", "-F", "-b", "4096"], 64, ["-t", "ext2"])
        if fs == "ext4-nodelalloc":
            mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096"]
            return self._loop("ext4-nodelalloc", mkfs, 64, ["-o", "nodelalloc"])
        if fs == "ext4-journal":
            mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096"]
            return self._loop("ext4-journal", mkfs, 64, ["-o", "data=journal"])
        if fs == "btrfs":
            return self._loop("btrfs", ["mkfs.btrfs", "-q", "-f"], 256)
        if fs == "tmpfs-huge":
            return self._mount("tmpfs-huge", ["-t", "tmpfs", "-o", "huge=always", "tmpfs"])
        if fs == "fuse":
            return self._fuse()
        from writepath.kernel.fs import MODEL_ONLY

        if fs in MODEL_ONLY:
            raise Unavailable(
                f"{fs} exists only in the model (a historical bug's form or a filesystem "
                "this machine cannot mount)"
            )
        raise Unavailable(f"unknown filesystem {fs}")

    def _need_root(self, what: str) -> None:
        if os.geteuid() != 0:
            raise Unavailable(f"{what} needs root")

    def _mount(self, fs: str, args: list[str]) -> str:
        self._need_root(f"mounting {fs}")
        work = self._tmp()
        mnt = os.path.join(work, "mnt")
        os.mkdir(mnt)
        r = subprocess.run(["mount", *args, mnt], capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"mount -t {fs} failed: {r.stderr.strip()}")
        self._mounts.append(mnt)
        return mnt

    def _loop(self, fs: str, mkfs: list[str], mib: int, options: list[str] | None = None) -> str:
        self._need_root(f"a loop-mounted {fs}")
        if not shutil.which(mkfs[0]):
            package = {"xfs": "xfsprogs", "btrfs": "btrfs-progs"}.get(fs, "e2fsprogs")
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
        # mount(8) sets up the loop device with LO_FLAGS_AUTOCLEAR: it goes with the mount.
        args = ["mount", *(options or []), "-o", "loop", image, mnt]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode:
            raise Unavailable(f"loop mount of {fs} failed: {r.stderr.strip()}")
        self._mounts.append(mnt)
        return mnt

    def _fuse(self) -> str:
        """Start the passthrough daemon on a mount point of its own; wait until it is mounted."""
        self._need_root("mounting the fuse passthrough filesystem")
        if not os.path.exists("/dev/fuse"):
            raise Unavailable("/dev/fuse is missing (no FUSE in this kernel)")
        if importlib.util.find_spec("mfusepy") is None:
            raise Unavailable("the fuse daemon needs mfusepy (pip install mfusepy)")
        if ctypes.util.find_library("fuse3") is None:
            raise Unavailable("the fuse daemon needs libfuse3 (Debian package fuse3)")
        work = self._tmp()
        # The backing files live on tmpfs where there is one: its size limit is the VFS's own
        # (MAX_LFS_FILESIZE), as is fuse's, so the daemon never refuses what the kernel allows.
        on_tmpfs = os.path.isdir("/dev/shm") and fs_type_of("/dev/shm") == "tmpfs"
        backing = os.path.join(self._tmp("/dev/shm") if on_tmpfs else work, "backing")
        mnt = os.path.join(work, "mnt")
        log = os.path.join(work, "fuse-writes.log")
        os.mkdir(backing)
        os.mkdir(mnt)
        open(log, "w").close()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "writepath.fusedaemon", backing, mnt, log],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._daemons.append(daemon)
        deadline = time.monotonic() + 15
        while not fs_type_of(mnt).startswith("fuse"):
            if daemon.poll() is not None:
                err = daemon.stderr.read().decode(errors="replace") if daemon.stderr else ""
                raise Unavailable(f"the fuse daemon exited: {err.strip() or daemon.returncode}")
            if time.monotonic() > deadline:
                raise Unavailable("the fuse daemon did not mount within 15 s")
            time.sleep(0.05)
        self._mounts.append(mnt)
        self._fuse_logs["fuse"] = log
        return mnt

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for mnt in reversed(self._mounts):
            r = subprocess.run(["umount", mnt], capture_output=True)
            if r.returncode:
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        for daemon in self._daemons:
            # Unmounted above, the daemon leaves by itself; SIGTERM, then SIGKILL, by its pid.
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(timeout=5)
            if daemon.poll() is None:
                daemon.terminate()
                try:
                    daemon.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
            if daemon.stderr is not None:
                daemon.stderr.close()
        self._daemons.clear()
        self._fuse_logs.clear()
        for d in reversed(self._tmpdirs):
            shutil.rmtree(d, ignore_errors=True)
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._mounts.clear()
        self._tmpdirs.clear()
        self._locks.clear()
        self._control = None
