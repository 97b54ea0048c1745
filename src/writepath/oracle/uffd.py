"""userfaultfd(2) through ctypes: pause a task at a fault on a chosen page, act, resolve it.

Linux include/uapi/linux/userfaultfd.h: the ioctl numbers and structures below are that header's
(x86_64). Registration is MISSING mode on anonymous memory: a read fault on a page that is not
present, taken by the kernel for a task that may sleep (``fault_in_readable()``), is handed to
the handler thread instead of mapping the zero page; the faulting task sleeps until the handler
resolves it. A fault taken with page faults disabled (the atomic copy) is never handed over: it
fails at once, as the model's refused fault does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
from collections.abc import Callable

from writepath.oracle.libc import libc

SYS_userfaultfd = 323  # x86_64
USERFAULTFD_IOC_NEW = 0xAA00  # _IO(0xAA, 0x00) on /dev/userfaultfd
UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F  # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
UFFDIO_UNREGISTER = 0x8010AA01  # _IOR(0xAA, 0x01, struct uffdio_range)
UFFDIO_ZEROPAGE = 0xC020AA04  # _IOWR(0xAA, 0x04, struct uffdio_zeropage)
UFFDIO_REGISTER_MODE_MISSING = 1
UFFD_EVENT_PAGEFAULT = 0x12
UFFD_MSG_SIZE = 32
PAGE_SIZE = 4096

_ioctl = libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int
_syscall = libc.syscall
_syscall.restype = ctypes.c_long


class UffdError(OSError):
    pass


def _call(fd: int, request: int, buf: ctypes.Array[ctypes.c_char], what: str) -> None:
    if _ioctl(fd, request, ctypes.addressof(buf)) < 0:
        e = ctypes.get_errno()
        raise UffdError(e, f"{what}: {os.strerror(e)}")


def open_userfaultfd() -> int:
    """A userfaultfd, from the system call or, where that is refused, /dev/userfaultfd."""
    flags = os.O_CLOEXEC | os.O_NONBLOCK
    fd = int(_syscall(ctypes.c_long(SYS_userfaultfd), ctypes.c_long(flags)))
    if fd < 0:
        dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
        try:
            fd = _ioctl(dev, USERFAULTFD_IOC_NEW, ctypes.c_void_p(flags))
        finally:
            os.close(dev)
        if fd < 0:
            e = ctypes.get_errno()
            raise UffdError(e, f"userfaultfd: {os.strerror(e)}")
    api = ctypes.create_string_buffer(struct.pack("QQQ", UFFD_API, 0, 0), 24)
    _call(fd, UFFDIO_API, api, "UFFDIO_API")
    return fd


def register_missing(fd: int, start: int, length: int) -> None:
    buf = ctypes.create_string_buffer(
        struct.pack("QQQQ", start, length, UFFDIO_REGISTER_MODE_MISSING, 0), 32
    )
    _call(fd, UFFDIO_REGISTER, buf, "UFFDIO_REGISTER")


def zeropage(fd: int, page: int) -> None:
    """Resolve a missing fault on ``page`` with the zero page (what untouched anonymous memory
    would have read) and wake the faulting task."""
    buf = ctypes.create_string_buffer(struct.pack("QQQq", page, PAGE_SIZE, 0, 0), 32)
    if _ioctl(fd, UFFDIO_ZEROPAGE, ctypes.addressof(buf)) < 0:
        e = ctypes.get_errno()
        if e != errno.EEXIST:  # mapped meanwhile: nothing to resolve
            raise UffdError(e, f"UFFDIO_ZEROPAGE: {os.strerror(e)}")


def serve(fd: int, stop_fd: int, on_fault: Callable[[int], None]) -> None:
    """Handle faults until ``stop_fd`` becomes readable: ``on_fault(page address)`` for each;
    it must resolve the fault."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(stop_fd, select.POLLIN)
    while True:
        ready = {f for f, _ in poller.poll()}
        if stop_fd in ready:
            return
        try:
            msg = os.read(fd, UFFD_MSG_SIZE)
        except BlockingIOError:
            continue
        event = msg[0]
        if event != UFFD_EVENT_PAGEFAULT:
            continue
        (address,) = struct.unpack_from("Q", msg, 16)
        on_fault(address & ~(PAGE_SIZE - 1))
