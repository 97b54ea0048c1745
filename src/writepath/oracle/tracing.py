"""The kernel's own tracepoints, recorded around each call of a scenario (tracefs).

The parent makes a trace instance of its own (``instances/writepath-…``), so parallel runs and
other tracers do not collide, with the global trace clock and the events of the path contract
(README "Tracepoints"). The child puts its own pid in ``set_event_pid`` and writes a marker into
``trace_marker`` before and after each call; afterwards it reads the buffer, checks that nothing
was overwritten or dropped, keeps the events between each call's markers, and renders them in
the contract's form, with user addresses turned into ``REGION+OFF`` and inode numbers into the
scenario's file names. Events about other files and addresses are dropped, as the contract says.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from writepath.kernel.constants import PAGE_SIZE

TRACEFS = "/sys/kernel/tracing"

#: The events of the contract, by tracefs path.
EVENTS = (
    "exceptions/page_fault_kernel",
    "filemap/mm_filemap_add_to_page_cache",
    "filemap/mm_filemap_delete_from_page_cache",
    "filemap/mm_filemap_fault",
    "filemap/mm_filemap_map_pages",
    "ext4/ext4_da_write_begin",
    "ext4/ext4_write_begin",
    "ext4/ext4_da_write_end",
    "ext4/ext4_write_end",
    "ext4/ext4_journalled_write_end",
    "iomap/iomap_iter",
)
#: Per-CPU buffer size: a catalogue scenario emits at most a few thousand events.
BUFFER_KB = 8192
MARK_BEGIN = "writepath-call-begin"
MARK_END = "writepath-call-end"


class TraceUnavailable(Exception):
    """tracefs is missing here or not permitted: the run compares end states only."""


class TraceLost(Exception):
    """The buffer overran or dropped events: the trace of this run cannot be trusted."""


def tracefs() -> str:
    """The tracefs mount point, mounting it at /sys/kernel/tracing if it is not mounted."""
    if os.path.exists(os.path.join(TRACEFS, "instances")):
        return TRACEFS
    if os.geteuid() != 0:
        raise TraceUnavailable("tracefs is not mounted and mounting it needs root")
    import subprocess

    r = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True, text=True)
    if r.returncode or not os.path.exists(os.path.join(TRACEFS, "instances")):
        raise TraceUnavailable(f"cannot mount tracefs: {r.stderr.strip() or 'no instances/'}")
    return TRACEFS


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@dataclass
class TraceInstance:
    """One trace instance, made by the parent and removed by it (``remove``)."""

    path: str

    @classmethod
    def create(cls, name: str) -> TraceInstance:
        root = tracefs()
        path = os.path.join(root, "instances", name)
        try:
            os.mkdir(path)
        except OSError as e:
            raise TraceUnavailable(f"cannot make trace instance {name}: {e.strerror}") from e
        inst = cls(path)
        try:
            _write(inst.file("tracing_on"), "0")
            _write(inst.file("trace_clock"), "global")
            _write(inst.file("buffer_size_kb"), str(BUFFER_KB))
            for event in EVENTS:
                enable = inst.file("events", event, "enable")
                if os.path.exists(enable):  # an event this kernel lacks simply never fires
                    _write(enable, "1")
        except OSError as e:
            inst.remove()
            raise TraceUnavailable(f"cannot configure trace instance {name}: {e}") from e
        return inst

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            _write(self.file("tracing_on"), "0")
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


class Recorder:
    """The child's side: follow this process, mark the calls, read the events back."""

    def __init__(self, inst: TraceInstance) -> None:
        self.inst = inst
        _write(inst.file("set_event_pid"), str(os.getpid()))
        _write(inst.file("trace"), "")  # start from an empty buffer
        self.marker = os.open(inst.file("trace_marker"), os.O_WRONLY | os.O_CLOEXEC)
        _write(inst.file("tracing_on"), "1")

    def begin(self, k: int) -> None:
        os.write(self.marker, f"{MARK_BEGIN} {k}".encode())

    def end(self, k: int) -> None:
        os.write(self.marker, f"{MARK_END} {k}".encode())

    def stop(self) -> None:
        _write(self.inst.file("tracing_on"), "0")
        os.close(self.marker)

    def check_complete(self) -> None:
        for cpu in os.listdir(self.inst.file("per_cpu")):
            with open(self.inst.file("per_cpu", cpu, "stats")) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() in ("overrun", "commit overrun", "dropped events") and int(
                        value.split()[0]
                    ):
                        raise TraceLost(f"{cpu}: {line.strip()}: enlarge BUFFER_KB")

    def lines(self) -> Iterator[str]:
        with open(self.inst.file("trace")) as f:
            for line in f:
                if not line.startswith("#"):
                    yield line.rstrip("\n")


_LINE = re.compile(r"^\s*.+?-(\d+)\s+\[\d+\]\s+\S+\s+[\d.]+:\s+(\w+):\s+(.*)$")
_FAULT = re.compile(r"address=(\S+) ip=(\S+) error_code=0x([0-9a-f]+)")
_FILEMAP_PAGE = re.compile(r"dev (\d+):(\d+) ino ([0-9a-f]+) pfn=\S+ ofs=(\d+) order=(\d+)")
_FILEMAP_FAULT = re.compile(r"dev=(\d+):(\d+) ino=([0-9a-f]+) ofs=(\d+)")
_FILEMAP_MAP = re.compile(r"dev=(\d+):(\d+) ino=([0-9a-f]+) ofs=(\d+)-(\d+)")
_EXT4 = re.compile(r"dev (\d+),(\d+) ino (\d+) pos (-?\d+) len (\d+)(?: copied (\d+))?")
_IOMAP = re.compile(
    r"dev (\d+):(\d+) ino 0x([0-9a-f]+) pos 0x([0-9a-f]+) length 0x([0-9a-f]+) "
    r"status (-?\d+) flags (.*?) \(0x[0-9a-f]+\)"
)


def _unescape_mountinfo(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def superblock_dev(path: str, mountinfo: str = "/proc/self/mountinfo") -> tuple[int, int]:
    """The device number the kernel's tracepoints print for a file at ``path``: its
    superblock's ``s_dev``, from the mount that holds it (mountinfo's major:minor field).

    ``stat()`` gives the same number on most filesystems, but not on btrfs, whose stat reports
    the subvolume's own anonymous device while ``mm_filemap_*`` and the others print
    ``i_sb->s_dev``. Falls back to ``stat()`` if no mount matches."""
    real = os.path.realpath(path)
    best: tuple[int, tuple[int, int]] | None = None
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 5:
                continue
            point = _unescape_mountinfo(fields[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= best[0]):
                major, _, minor = fields[2].partition(":")
                best = (len(point), (int(major), int(minor)))
    if best is None:
        st = os.stat(path)
        return os.major(st.st_dev), os.minor(st.st_dev)
    return best[1]


@dataclass
class Namer:
    """Turns addresses and (device, inode) pairs into the scenario's region and file names."""

    regions: list[tuple[str, int, int]]  # (name, start, end)
    files: dict[tuple[int, int, int], str]  # (major, minor, ino) -> name

    def address(self, addr: int) -> str | None:
        if 0 <= addr < PAGE_SIZE:
            return f"null+{addr}"
        for name, start, end in self.regions:
            if start <= addr < end:
                return f"{name}+{addr - start}"
        return None

    def file(self, major: str, minor: str, ino: int) -> str | None:
        return self.files.get((int(major), int(minor), ino))


def render(event: str, body: str, namer: Namer) -> str | None:
    """One trace line in the contract's form, or None if it is not about the scenario."""
    if event == "page_fault_kernel":
        m = _FAULT.match(body)
        if not m:
            return None
        try:
            addr = int(m.group(1), 16)
        except ValueError:
            return None  # a kernel symbol: not a user address
        where = namer.address(addr)
        if where is None:
            return None
        return f"page_fault_kernel addr={where} ip={m.group(2)} error=0x{int(m.group(3), 16):x}"
    if event in ("mm_filemap_add_to_page_cache", "mm_filemap_delete_from_page_cache"):
        m = _FILEMAP_PAGE.match(body)
        name = m and namer.file(m.group(1), m.group(2), int(m.group(3), 16))
        if not m or not name:
            return None
        return f"{event} file={name} index={int(m.group(4)) // PAGE_SIZE} order={m.group(5)}"
    if event == "mm_filemap_fault":
        m = _FILEMAP_FAULT.match(body)
        name = m and namer.file(m.group(1), m.group(2), int(m.group(3), 16))
        if not m or not name:
            return None
        return f"{event} file={name} index={int(m.group(4)) // PAGE_SIZE}"
    if event == "mm_filemap_map_pages":
        m = _FILEMAP_MAP.match(body)
        name = m and namer.file(m.group(1), m.group(2), int(m.group(3), 16))
        if not m or not name:
            return None
        start, last = int(m.group(4)) // PAGE_SIZE, int(m.group(5)) // PAGE_SIZE
        return f"{event} file={name} start={start} end={last}"
    if event.startswith("ext4_"):
        m = _EXT4.match(body)
        if not m or not namer.file(m.group(1), m.group(2), int(m.group(3))):
            return None
        out = f"{event} pos={m.group(4)} len={m.group(5)}"
        return out + (f" copied={m.group(6)}" if m.group(6) is not None else "")
    if event == "iomap_iter":
        m = _IOMAP.match(body)
        if not m or not namer.file(m.group(1), m.group(2), int(m.group(3), 16)):
            return None
        pos, length = int(m.group(4), 16), int(m.group(5), 16)
        return f"iomap_iter pos={pos} length={length} status={m.group(6)} flags={m.group(7)}"
    return None


def split_calls(lines: Iterator[str], pid: int, ncalls: int, namer: Namer) -> list[list[str]]:
    """The rendered events of ``pid`` between each call's markers, call by call."""
    out: list[list[str]] = [[] for _ in range(ncalls)]
    current: int | None = None
    for line in lines:
        m = _LINE.match(line)
        if not m or int(m.group(1)) != pid:
            continue
        event, body = m.group(2), m.group(3)
        if event == "tracing_mark_write":
            word, _, k = body.partition(" ")
            if word == MARK_BEGIN and k.isdigit() and int(k) < ncalls:
                current = int(k)
            elif word == MARK_END:
                current = None
            continue
        if current is None:
            continue
        text = render(event, body, namer)
        if text is not None:
            out[current].append(text)
    return out
