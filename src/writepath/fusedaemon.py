"""The project's FUSE passthrough daemon: mirrors a backing directory and logs every WRITE.

Run by the oracle's pool (``writepath.mounts``) in a process of its own::

    python -m writepath.fusedaemon BACKING MOUNTPOINT WRITE_LOG

It stays in the foreground, single-threaded, until the mount goes away or it gets SIGTERM (which
it also gets when the process that started it dies: PR_SET_PDEATHSIG), and unmounts on the way
out. Each FUSE_WRITE it receives is appended to WRITE_LOG as ``<path> <offset> <size>``, one line
per request, flushed at once: the write requests the kernel's ``fuse_perform_write()`` made,
which the model's must match.

Built on mfusepy (ctypes bindings of libfuse 3's high-level API): no compiler and no libfuse
headers needed, only Debian's fuse3/libfuse3-3; pyfuse3 would need a C build against
libfuse3-dev and trio, fusepy is libfuse 2 only and unmaintained, and bindfs cannot log
requests. Mounted with ``kernel_cache`` so that opening a file does not drop its page cache (the
model's "cached" file stays cached, as on the other filesystems), without ``writeback_cache`` and
``direct_io``: buffered writes go through ``fuse_perform_write()``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGTERM when the parent goes; if it is already gone, go now."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        sys.exit(1)


def make_operations(backing: str, log_path: str) -> Any:
    import mfusepy  # type: ignore[import-untyped]

    class Passthrough(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.root = os.path.realpath(backing)
            self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the mount

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks")
            out: dict[str, Any] = {k: getattr(st, k) for k in keys}
            for k in ("st_atime", "st_mtime", "st_ctime"):
                out[k] = getattr(st, k + "_ns")
            return out

        def access(self, path: str, amode: int) -> int:
            if not os.access(self._full(path), amode):
                raise mfusepy.FuseOSError(errno.EACCES)
            return 0

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._full(path))]

        def mkdir(self, path: str, mode: int) -> int:
            os.mkdir(self._full(path), mode)
            return 0

        def rmdir(self, path: str) -> int:
            os.rmdir(self._full(path))
            return 0

        def unlink(self, path: str) -> int:
            os.unlink(self._full(path))
            return 0

        def rename(self, old: str, new: str) -> int:
            os.rename(self._full(old), self._full(new))
            return 0

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(self._full(path), mode)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(self._full(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            if times is None:
                os.utime(self._full(path))
            else:
                os.utime(self._full(path), ns=times)
            return 0

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self._full(path), length)
            return 0

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return os.open(self._full(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)

        def open(self, path: str, flags: int) -> int:
            # The kernel handles O_APPEND and O_TRUNC itself; the backing fd only needs access.
            return os.open(self._full(path), os.O_RDWR | os.O_CLOEXEC)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            self.log.write(f"{path} {offset} {len(data)}\n")
            return os.pwrite(fh, data, offset)

        def flush(self, path: str, fh: int) -> int:
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            os.fsync(fh)
            return 0

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def lseek(self, path: str, offset: int, whence: int, fh: int) -> int:
            # SEEK_DATA/SEEK_HOLE answered from the backing file, so that a sparse file can be
            # walked (and read back by the oracle) without reading its holes.
            return os.lseek(fh, offset, whence)

        def statfs(self, path: str) -> dict[str, int]:
            st = os.statvfs(self.root)
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree")
            return {k: getattr(st, k) for k in (*keys, "f_files", "f_frsize", "f_namemax")}

    return Passthrough()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m writepath.fusedaemon BACKING MOUNTPOINT WRITE_LOG", file=sys.stderr)
        return 2
    _die_with_parent()
    try:
        import mfusepy
    except ImportError:
        print("mfusepy is not installed (pip install mfusepy)", file=sys.stderr)
        return 3
    backing, mountpoint, log_path = argv

    class FUSE(mfusepy.FUSE):  # type: ignore[misc]
        """mfusepy with the FUSE_LSEEK callback, which it lists but does not wrap."""

        def lseek(self, path: bytes | None, offset: int, whence: int, fip: Any) -> int:
            name = None if path is None else path.decode(self.encoding, self.errors)
            result: int = self.operations.lseek(name, offset, whence, fip.contents.fh)
            return result

    FUSE(
        make_operations(backing, log_path),
        mountpoint,
        foreground=True,
        nothreads=True,
        kernel_cache=True,
        fsname="writepath-fuse",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
