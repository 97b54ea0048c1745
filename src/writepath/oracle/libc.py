"""The few libc calls the oracle makes with raw addresses (ctypes), and their constants.

Everything here is a thin binding: the calls a scenario makes go to the kernel exactly as a C
program would make them, with the addresses and lengths the scenario names (Python's ``os``
functions would copy buffers and hide the addresses). Constants are the x86_64 Linux values
(include/uapi/asm-generic/mman-common.h, include/uapi/linux/prctl.h, include/uapi/linux/sched.h,
include/uapi/linux/mount.h).
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000
MADV_NOHUGEPAGE = 15
PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

MAP_FAILED = ctypes.c_void_p(-1).value

libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
# The write calls take the descriptor as an unsigned int in the kernel (ksys_write(unsigned int
# fd, ...)); passing a C int keeps the bit pattern, as a C caller would.
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.write.restype = ctypes.c_ssize_t
libc.pwrite.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]
libc.pwrite.restype = ctypes.c_ssize_t


class Iovec(ctypes.Structure):
    """struct iovec."""

    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


libc.writev.argtypes = [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_int]
libc.writev.restype = ctypes.c_ssize_t
libc.pwritev.argtypes = [ctypes.c_int, ctypes.POINTER(Iovec), ctypes.c_int, ctypes.c_int64]
libc.pwritev.restype = ctypes.c_ssize_t
libc.lseek.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int]
libc.lseek.restype = ctypes.c_int64


class LibcError(OSError):
    """A libc call failed; ``what`` names it."""


def check(ret: int | None, what: str) -> int:
    """``ret`` unless the call failed (-1, MAP_FAILED or NULL), then LibcError with errno."""
    if ret is None or ret == MAP_FAILED or (isinstance(ret, int) and ret < 0):
        e = ctypes.get_errno()
        raise LibcError(e, f"{what}: {os.strerror(e)}")
    return int(ret)


def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    return check(libc.mmap(addr or None, length, prot, flags, fd, offset), "mmap")


def munmap(addr: int, length: int) -> None:
    check(libc.munmap(addr, length), "munmap")


def mprotect(addr: int, length: int, prot: int) -> None:
    check(libc.mprotect(addr, length, prot), "mprotect")


def set_pdeathsig(signum: int) -> None:
    """PR_SET_PDEATHSIG: the calling process gets ``signum`` when its parent dies."""
    check(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def unshare_mount_namespace() -> None:
    """unshare(CLONE_NEWNS), then make every mount private, so mounts made from now on by this
    process and its children are invisible outside and vanish when the last of them exits."""
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
