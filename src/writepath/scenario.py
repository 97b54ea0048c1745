"""Scenario files: TOML in, frozen dataclasses out, with errors that name file, field and reason.

The format is a public contract (README "Scenario files"); every field is checked here so that
the model and the real-kernel oracle can trust what they are given. Unknown keys are errors: a
misspelt field must not silently fall back to a default.
"""

from __future__ import annotations

import errno as errno_mod
import math
import os
import re
import reprlib
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from writepath.datadirs import data_dir
from writepath.kernel.constants import (
    KERNEL_ADDRESS,
    LLONG_MAX,
    MAX_LFS_FILESIZE,
    MAX_RW_COUNT,
    PAGE_SHIFT,
    PAGE_SIZE,
    TASK_SIZE_MAX,
    UIO_MAXIOV,
)
from writepath.kernel.filemap import DESIGNS
from writepath.kernel.fs import filesystems

# One source of truth: the names scenarios may use are the model's own tables.
_FS_TABLE = filesystems()
FILESYSTEMS = tuple(_FS_TABLE)
DESIGN_NAMES = tuple(DESIGNS)
REGION_KINDS = ("anon", "file", "hole")
PROTS = ("r", "rw", "none")
#: The write-path calls, then the calls that race with a write from another task.
WRITE_OPS = ("write", "pwrite", "writev", "pwritev", "lseek")
RACE_OPS = ("madvise", "munmap", "mprotect", "ftruncate", "fadvise", "pread", "kill")
OPS = WRITE_OPS + RACE_OPS
MADVISE_ADVICE = ("MADV_DONTNEED",)
FADVISE_ADVICE = ("POSIX_FADV_DONTNEED",)
SIGNALS = ("SIGKILL",)
#: The task a call without ``task`` belongs to.
MAIN_TASK = "main"
#: Tasks of one scenario: each is a thread of the one process; the explorer's search grows with
#: their number, and four are enough for every race the catalogue shows.
MAX_TASKS = 4
#: ``repeat`` runs a racing call this many times at most (a task that keeps dropping the source).
MAX_REPEAT = 64
OPEN_FLAGS = ("O_APPEND", "O_RDONLY", "O_WRONLY", "O_RDWR")
WHENCES = ("SEEK_SET", "SEEK_CUR", "SEEK_END")
VERDICTS = ("ok", "deadlock", "livelock", "stale-data")
SPECIAL_REGIONS = ("null", "kernel")
_NEVER_ENDS = ("deadlock", "livelock")

_DATA_RE = re.compile(r"^(zero|pattern|pattern:\d{1,20}|byte:0x[0-9a-fA-F]{1,2})$")
#: File and region names become file names (the oracle creates them) and event labels: one path
#: component of a portable character set, short enough to print in a table.
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCENARIO_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")

# The C types the kernel receives, as ranges.
U64_MAX = (1 << 64) - 1  # an address or a size_t
S64_MIN = -(1 << 63)  # loff_t and ssize_t are signed 64-bit
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1  # a file descriptor is an int
#: The largest file offset any filesystem can address: loff_t is a signed 64-bit integer, and
#: MAX_LFS_FILESIZE (include/linux/fs.h) is LLONG_MAX on 64-bit machines.
MAX_LOFF = LLONG_MAX
#: The longest range one [expect] content entry may state: the judge compares it piece by
#: piece, and a longer range says nothing a shorter one would not.
MAX_EXPECT_CONTENT = 64 << 20
#: RLIM_INFINITY (include/uapi/asm-generic/resource.h): ~0UL, "no limit".
RLIM_INFINITY = U64_MAX
#: An offset into a region must leave region base + offset a 64-bit address wherever the region
#: lies in user space (below TASK_SIZE_MAX).
MAX_REGION_OFFSET = U64_MAX - TASK_SIZE_MAX

# Counts. A scenario is a small experiment; these keep parsing, the model and the oracle's
# mmap/open calls small while leaving room for every kernel limit worth testing.
#: Each file is created, filled and opened on a real filesystem by the oracle.
MAX_FILES = 16
#: Each region is one mmap() (one VMA) in the model and in the oracle.
MAX_REGIONS = 64
#: Each call runs in every design and on the real kernel.
MAX_CALLS = 1024
#: writev() refuses more than UIO_MAXIOV vectors with EINVAL; twice that lets a scenario test
#: the refusal (writev-too-many-vectors uses UIO_MAXIOV + 1) without unbounded iovec arrays.
MAX_IOV_PER_CALL = 2 * UIO_MAXIOV
#: All iov entries of all calls together.
MAX_IOV_TOTAL = 16 * UIO_MAXIOV
MAX_DESCRIPTION = 4000
MAX_SOURCE = 500
#: A scenario file is a few kilobytes; refuse anything larger before reading it whole.
MAX_SCENARIO_BYTES = 1 << 20

#: What ``check_memory`` allows by default (``--max-memory``).
DEFAULT_MAX_MEMORY = 3 << 30
#: What the model keeps per present user page besides its data: an entry in the page-table dict
#: (key, slot and a (page, offset) tuple): about 150 bytes measured with tracemalloc on CPython
#: 3.11; rounded up for the fault's bookkeeping.
PTE_OVERHEAD = 256
#: What the model keeps per page-cache folio besides its data: the Folio object (ten slots), its
#: bytearray header and the page-cache index entry, and the write loop's events for the chunk.
FOLIO_OVERHEAD = 512


class _ShortRepr(reprlib.Repr):
    """repr() for error messages: bounded length and depth (a hostile value may be nested
    thousands deep or hold an integer with more digits than int-to-str allows)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = 4
        self.maxdict = 4
        self.maxstring = 60
        self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def _show(value: Any) -> str:
    return _SHORT.repr(value)


_KIND_NAMES = {
    bool: "true or false",
    int: "an integer",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def _describe(value: Any) -> str:
    """``float nan``, ``date 1979-05-27``: the TOML type and a short form of the value."""
    names = {bool: "boolean", int: "integer", str: "string", list: "array", dict: "table"}
    kind = names.get(type(value), type(value).__name__)
    if hasattr(value, "isoformat"):  # TOML dates and times
        return f"{kind} {value.isoformat()}"
    return f"{kind} {_show(value)}"


def _key(key: Any) -> str:
    """A table key as part of a field name: as is when it is a plain name, else quoted."""
    return key if isinstance(key, str) and _COMPONENT_RE.match(key) else _show(key)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ScenarioError(ValueError):
    """A scenario that cannot be run: ``path: field: reason``."""

    def __init__(self, path: str, field_name: str, reason: str) -> None:
        super().__init__(f"{path}: {field_name}: {reason}")
        self.path = path
        self.field = field_name
        self.reason = reason

    def __reduce__(self) -> tuple[type[ScenarioError], tuple[str, str, str]]:
        # Rebuilt from its three parts when a worker process sends it back.
        return (ScenarioError, (self.path, self.field, self.reason))


def fill(spec: str, length: int, start: int = 0) -> bytes:
    """Bytes ``start .. start+length`` of an object whose content is ``spec``.

    ``pattern`` is byte k = k % 251 + 1 (never zero, and 251 is prime so no page repeats another);
    ``pattern:SEED`` is (k + SEED) % 251 + 1; ``byte:0xNN`` every byte NN; ``zero`` zeros.
    """
    if spec == "zero" or length <= 0:
        return bytes(max(length, 0))
    if spec.startswith("byte:"):
        return bytes([int(spec[5:], 16)]) * length
    seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
    first = (start + seed) % 251
    period = bytes((first + k) % 251 + 1 for k in range(251))
    reps, rest = divmod(length, 251)
    return period * reps + period[:rest]


def is_zero_data(spec: str) -> bool:
    return spec == "zero" or spec in ("byte:0x0", "byte:0x00")


@dataclass(frozen=True)
class FileSpec:
    name: str
    fs: str
    size: int
    data: str = "pattern"
    cached: bool = True

    @property
    def sparse(self) -> bool:
        """A file of zeros is created as a hole (ftruncate), with no pages or blocks."""
        return is_zero_data(self.data)


@dataclass(frozen=True)
class RegionSpec:
    name: str
    pages: int
    kind: str
    file: str | None = None
    offset: int = 0
    shared: bool = True
    prot: str = "rw"
    touched: bool = False
    data: str = "zero"

    @property
    def length(self) -> int:
        return self.pages * PAGE_SIZE


@dataclass(frozen=True)
class IovSpec:
    region: str
    offset: int
    length: int


@dataclass(frozen=True)
class CallSpec:
    op: str
    file: str
    iov: tuple[IovSpec, ...] = ()
    pos: int = 0
    flags: tuple[str, ...] = ()
    whence: str = "SEEK_SET"
    fd: int | None = None
    #: The task (thread of the scenario's one process) that makes the call.
    task: str = MAIN_TASK
    #: The racing ops' arguments: madvise/munmap/mprotect take region, offset (page-aligned,
    #: within the region) and length; ftruncate/fadvise/pread take length (and file, pos);
    #: kill takes target and signal.
    region: str | None = None
    offset: int = 0
    length: int = 0
    advice: str | None = None
    prot: str | None = None
    target: str | None = None
    signal: str | None = None
    #: How many times the call is made in a row (racing ops only).
    repeat: int = 1


@dataclass(frozen=True)
class Expect:
    """What a design must produce. ``ret`` has one entry per call: a byte count or an errno
    name; None means "not stated". ``consistent`` asks for the LTP writev07 property.

    ``content`` maps a file to ``(offset, length, spec)`` ranges whose bytes must equal
    ``fill(spec, length)``. ``stale`` maps a file to the exact ``[start, end)`` byte ranges that
    hold uninitialized memory after the run; None means "not stated" and an empty tuple "none".
    """

    verdict: str = "ok"
    ret: tuple[int | str, ...] | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)
    consistent: bool = False
    content: Mapping[str, tuple[tuple[int, int, str], ...]] = field(default_factory=dict)
    stale: Mapping[str, tuple[tuple[int, int], ...]] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: str
    files: tuple[FileSpec, ...]
    regions: tuple[RegionSpec, ...]
    calls: tuple[CallSpec, ...]
    expect: Expect | None = None
    expect_by_design: Mapping[str, Expect] = field(default_factory=dict)
    rlimit_fsize: int | None = None
    path: str = "<memory>"

    def file(self, name: str) -> FileSpec:
        return next(f for f in self.files if f.name == name)

    def region(self, name: str) -> RegionSpec:
        return next(r for r in self.regions if r.name == name)

    def expectation(self, design: str) -> Expect | None:
        return self.expect_by_design.get(design, self.expect)

    @property
    def single_task(self) -> bool:
        return all(c.task == MAIN_TASK for c in self.calls)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The scenario's tasks in order of first call, ``main`` first: task k has pid k + 1."""
        names = [MAIN_TASK]
        for c in self.calls:
            if c.task not in names:
                names.append(c.task)
        return tuple(names)


class _Reader:
    """Field access on one TOML table with errors that say where."""

    def __init__(self, path: str, where: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ScenarioError(path, where or "-", f"must be a table, not {_describe(table)}")
        self.path, self.where, self.table = path, where, table

    def field_name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def err(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.path, self.field_name(key), reason)

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.table:
            if key not in allowed:
                raise self.err(_key(key), f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        required: bool = False,
    ) -> Any:
        if key not in self.table:
            if required or default is ...:
                raise self.err(key, "is required")
            return default
        value = self.table[key]
        # TOML booleans are Python ints: true must not pass as 1.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            raise self.err(key, f"must be {_kind_name(kind)}, not {_describe(value)}")
        return value

    def integer(self, key: str, default: Any, low: int, high: int, why: str) -> Any:
        """An integer field within [low, high]; ``why`` names the limit."""
        value = self.get(key, int, default)
        if value is not None and not low <= value <= high:
            raise self.err(key, f"{_show(value)} is out of range [{low}, {high}] ({why})")
        return value

    def text(self, key: str, limit: int, allow_newlines: bool) -> str:
        value = str(self.get(key, str, ""))
        if len(value) > limit:
            raise self.err(key, f"is {len(value)} characters long; at most {limit} are allowed")
        allowed = "\n\t" if allow_newlines else ""
        if any((ch < " " and ch not in allowed) or ch == "\x7f" for ch in value):
            raise self.err(key, "contains control characters")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.err(key, f"{_show(value)} is not one of {', '.join(choices)}")
        return str(value)

    def counted_list(self, key: str, limit: int, why: str) -> list[Any]:
        value: list[Any] = self.get(key, list, [])
        if len(value) > limit:
            raise self.err(key, f"has {len(value)} entries; at most {limit} ({why})")
        return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _data_spec(r: _Reader, key: str, default: str) -> str:
    value = r.get(key, str, default)
    if not _DATA_RE.match(value):
        raise r.err(key, f"{_show(value)} is not zero, pattern, pattern:SEED or byte:0xNN")
    return str(value)


def _component_name(r: _Reader) -> str:
    name = r.get("name", str, required=True)
    if not _COMPONENT_RE.match(name) or name in (".", ".."):
        raise r.err(
            "name",
            f"{_show(name)} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-' "
            "(one path component, not '.' or '..')",
        )
    if name in SPECIAL_REGIONS:
        raise r.err("name", f"{name!r} is reserved")
    return str(name)


def _parse_file(path: str, i: int, table: Any) -> FileSpec:
    r = _Reader(path, f"file[{i}]", table)
    r.check_keys(("name", "fs", "size", "data", "cached"))
    name = _component_name(r)
    fs = r.choice("fs", FILESYSTEMS, "tmpfs")
    maxbytes = _FS_TABLE[fs].s_maxbytes
    size = r.integer("size", 0, 0, maxbytes, f"s_maxbytes of {fs}")
    data = _data_spec(r, "data", "pattern")
    cached = r.get("cached", bool, True)
    if not cached and not _FS_TABLE[fs].backed and not is_zero_data(data) and size:
        raise r.err(
            "cached",
            f"{fs} keeps file data only in the page cache; a file with data cannot be uncached",
        )
    return FileSpec(name, fs, size, data, cached)


def max_user_pages() -> int:
    """How many region pages fit in user space from the model's base address, with one guard
    page before and one after the regions (all below TASK_SIZE_MAX)."""
    # layout imports this module for its types, so it is imported when first needed.
    from writepath.layout import MODEL_BASE

    return (TASK_SIZE_MAX - MODEL_BASE) // PAGE_SIZE - 2


def _parse_region(
    path: str, i: int, table: Any, files: dict[str, FileSpec], pages_before: int
) -> RegionSpec:
    r = _Reader(path, f"region[{i}]", table)
    r.check_keys(("name", "pages", "kind", "file", "offset", "shared", "prot", "touched", "data"))
    name = _component_name(r)
    room = max_user_pages() - pages_before
    pages = r.integer(
        "pages", 1, 1, max(room, 1), "the regions and two guard pages must fit in user space"
    )
    if pages > room:
        raise r.err("pages", "the regions before it already fill user space")
    kind = r.choice("kind", REGION_KINDS, "anon")
    prot = r.choice("prot", PROTS, "rw")
    touched = r.get("touched", bool, False)
    shared = r.get("shared", bool, True)
    file_name = None
    offset = 0
    if kind == "file":
        file_name = r.get("file", str, required=True)
        if file_name not in files:
            raise r.err("file", f"no [[file]] is named {_show(file_name)}")
        # file_mmap_ok(): the mapping must end within MAX_LFS_FILESIZE.
        offset = r.integer(
            "offset", 0, 0, MAX_LFS_FILESIZE - pages * PAGE_SIZE, "the mapping ends by 2**63-1"
        )
        if offset % PAGE_SIZE:
            raise r.err("offset", f"must be a page-aligned file offset >= 0, not {offset}")
        target = files[file_name]
        if touched:
            last = offset + (pages - 1) * PAGE_SIZE
            if last >= target.size:
                raise r.err(
                    "touched",
                    f"page at file offset {last} lies wholly beyond EOF ({target.size}) of "
                    f"{file_name!r}: touching it would raise SIGBUS",
                )
    else:
        for key in ("file", "offset"):
            if key in r.table:
                raise r.err(key, f"only a file region has {key}")
    if kind != "anon" and "data" in r.table:
        raise r.err("data", "only an anonymous region has its own data")
    data = _data_spec(r, "data", "zero")
    if touched and kind == "hole":
        raise r.err("touched", "a hole has no pages to touch")
    if touched and prot == "none":
        raise r.err("touched", "a PROT_NONE page cannot be touched")
    if kind == "anon" and not touched and not is_zero_data(data):
        raise r.err("data", "untouched anonymous memory reads as zeros; set touched = true")
    if kind == "hole" and "prot" in r.table:
        raise r.err("prot", "a hole has no protection")
    return RegionSpec(name, pages, kind, file_name, offset, shared, prot, touched, data)


def _iov_offset_range(region: str) -> tuple[int, int, str]:
    """Offsets an iov entry may name so that its address is a 64-bit value."""
    if region == "null":
        return 0, U64_MAX, "address 0 + offset is a 64-bit address"
    if region == "kernel":
        return -KERNEL_ADDRESS, U64_MAX - KERNEL_ADDRESS, "a 64-bit kernel address"
    return 0, MAX_REGION_OFFSET, "region address + offset is a 64-bit address"


def _parse_iov(r: _Reader, op: str, k: int, entry: Any, regions: dict[str, RegionSpec]) -> IovSpec:
    where = f"iov[{k}]"
    if not isinstance(entry, list) or len(entry) != 3:
        raise r.err(where, f"must be [region, offset, length], not {_describe(entry)}")
    region, offset, length = entry
    if not isinstance(region, str):
        raise r.err(where, f"the region must be a string, not {_describe(region)}")
    for part, value in (("offset", offset), ("length", length)):
        if not _is_int(value):
            raise r.err(where, f"the {part} must be an integer, not {_describe(value)}")
    if region not in regions and region not in SPECIAL_REGIONS:
        raise r.err(where, f"no [[region]] is named {_show(region)} (nor is it null or kernel)")
    low, high, why = _iov_offset_range(region)
    if region in regions and offset < 0:
        raise r.err(where, f"offset {offset} lies before region {region!r}")
    if not low <= offset <= high:
        raise r.err(where, f"offset {_show(offset)} is out of range [{low}, {high}] ({why})")
    if length < 0 and op in ("write", "pwrite"):
        raise r.err(where, "a write length is a size_t; use writev for a negative iov_len")
    # iov_len is a size_t: a negative length is what the kernel sees as a huge one.
    if not S64_MIN <= length <= U64_MAX:
        raise r.err(
            where, f"length {_show(length)} is out of range [{S64_MIN}, {U64_MAX}] (a size_t)"
        )
    return IovSpec(region, offset, length)


def _parse_call(
    path: str,
    i: int,
    table: Any,
    files: dict[str, FileSpec],
    regions: dict[str, RegionSpec],
) -> CallSpec:
    r = _Reader(path, f"call[{i}]", table)
    op = r.choice("op", OPS)
    if op in RACE_OPS:
        return _parse_race_call(r, op, files, regions)
    r.check_keys(("op", "file", "iov", "pos", "flags", "whence", "fd", "task"))
    task = _task_name(r)
    file_name = r.get("file", str, next(iter(files)))
    if file_name not in files:
        raise r.err("file", f"no [[file]] is named {_show(file_name)}")
    raw_iov = r.counted_list("iov", MAX_IOV_PER_CALL, f"UIO_MAXIOV is {UIO_MAXIOV}")
    iov = [_parse_iov(r, op, k, entry, regions) for k, entry in enumerate(raw_iov)]
    if op in ("write", "pwrite") and len(iov) != 1:
        raise r.err("iov", f"{op} takes exactly one [region, offset, length]")
    if op == "lseek" and iov:
        raise r.err("iov", "lseek takes no iov")
    pos = r.integer("pos", 0, S64_MIN, LLONG_MAX, "a loff_t")
    flags = r.counted_list("flags", len(OPEN_FLAGS), "each flag at most once")
    for flag in flags:
        if flag not in OPEN_FLAGS:
            raise r.err("flags", f"{_show(flag)} is not one of {', '.join(OPEN_FLAGS)}")
    for flag in set(flags):
        if flags.count(flag) > 1:
            raise r.err("flags", f"{flag} is given twice")
    if op != "lseek" and "whence" in r.table:
        raise r.err("whence", f"only lseek has a whence, not {op}")
    whence = r.choice("whence", WHENCES, "SEEK_SET")
    fd = r.integer("fd", None, INT_MIN, INT_MAX, "a file descriptor is an int")
    return CallSpec(op, file_name, tuple(iov), pos, tuple(flags), whence, fd, task)


def _task_name(r: _Reader) -> str:
    task = r.get("task", str, MAIN_TASK)
    if not _COMPONENT_RE.match(task):
        raise r.err(
            "task", f"{_show(task)} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        )
    return str(task)


#: The keys each racing op takes besides op, task and repeat.
_RACE_KEYS: dict[str, tuple[str, ...]] = {
    "madvise": ("region", "offset", "length", "advice"),
    "munmap": ("region", "offset", "length"),
    "mprotect": ("region", "offset", "length", "prot"),
    "ftruncate": ("file", "length"),
    "fadvise": ("file", "offset", "length", "advice"),
    "pread": ("file", "pos", "length"),
    "kill": ("target", "signal"),
}


def _parse_race_call(
    r: _Reader, op: str, files: dict[str, FileSpec], regions: dict[str, RegionSpec]
) -> CallSpec:
    """A call that races with a write from another task (madvise, munmap, mprotect, ftruncate,
    fadvise, pread, kill); every argument required, as the syscall has no defaults."""
    keys = _RACE_KEYS[op]
    r.check_keys(("op", "task", "repeat", *keys))
    task = _task_name(r)
    repeat = r.integer(
        "repeat", 1, 1, MAX_REPEAT, "a racing call repeats a bounded number of times"
    )
    file_name = next(iter(files))
    region = advice = prot = target = signal = None
    offset = length = pos = 0
    if "region" in keys:
        region = r.get("region", str, required=True)
        if region not in regions:
            raise r.err("region", f"no [[region]] is named {_show(region)}")
        reg = regions[region]
        if reg.kind == "hole":
            raise r.err("region", f"{region!r} is a hole: it has no mapping to change")
        offset = r.integer("offset", ..., 0, reg.length - PAGE_SIZE, f"within region {region!r}")
        if offset % PAGE_SIZE:
            raise r.err("offset", f"must be page-aligned, not {offset}")
        length = r.integer(
            "length", ..., PAGE_SIZE, reg.length - offset, f"within region {region!r}"
        )
        if length % PAGE_SIZE:
            raise r.err("length", f"must be a multiple of the page size, not {length}")
        if op == "munmap" and (offset or length != reg.length):
            # Splitting a VMA is not modelled: munmap removes a whole region.
            raise r.err("length", f"munmap removes the whole region ({reg.length} bytes from 0)")
    if "file" in keys:
        file_name = r.get("file", str, required=True)
        if file_name not in files:
            raise r.err("file", f"no [[file]] is named {_show(file_name)}")
        maxbytes = _FS_TABLE[files[file_name].fs].s_maxbytes
        if op == "fadvise":
            offset = r.integer("offset", ..., 0, maxbytes, "a file offset")
        if op == "pread":
            pos = r.integer("pos", ..., 0, maxbytes, "a file offset")
        length = r.integer("length", ..., 0, maxbytes, f"s_maxbytes of {files[file_name].fs}")
    if "advice" in keys:
        advice = r.choice("advice", MADVISE_ADVICE if op == "madvise" else FADVISE_ADVICE)
    if "prot" in keys:
        prot = r.choice("prot", PROTS)
    if op == "kill":
        target = _task_name(_Reader(r.path, r.where, {"task": r.get("target", str, required=True)}))
        if target == task:
            raise r.err("target", "a task does not kill itself here: name another task")
        signal = r.choice("signal", SIGNALS)
    return CallSpec(
        op,
        file_name,
        (),
        pos,
        (),
        "SEEK_SET",
        None,
        task,
        region,
        offset,
        length,
        advice,
        prot,
        target,
        signal,
        repeat,
    )


def _check_tasks(path: str, calls: tuple[CallSpec, ...]) -> None:
    """Tasks are named by their calls: at most MAX_TASKS, main among them, kills aimed at one."""
    names: list[str] = []
    for c in calls:
        if c.task not in names:
            names.append(c.task)
    if len(names) > MAX_TASKS:
        raise ScenarioError(path, "call", f"has {len(names)} tasks; at most {MAX_TASKS}")
    if MAIN_TASK not in names:
        raise ScenarioError(path, "call", f"no call belongs to task {MAIN_TASK!r}")
    for i, c in enumerate(calls):
        if c.target is not None and c.target not in names:
            raise ScenarioError(path, f"call[{i}].target", f"no call belongs to task {c.target!r}")


def _parse_expect(
    path: str, where: str, table: Any, ncalls: int, files: dict[str, FileSpec]
) -> Expect:
    r = _Reader(path, where, table)
    r.check_keys(("verdict", "ret", "sizes", "consistent", "content", "stale"))
    verdict = r.choice("verdict", VERDICTS, "ok")
    ret = r.get("ret", list, None)
    if ret is not None:
        if len(ret) != ncalls:
            raise r.err("ret", f"has {len(ret)} entries for {ncalls} calls")
        for k, value in enumerate(ret):
            if isinstance(value, str):
                if not value.startswith("E") or not isinstance(
                    getattr(errno_mod, value, None), int
                ):
                    raise r.err(f"ret[{k}]", f"{_show(value)} is not an errno name")
            elif not _is_int(value):
                raise r.err(
                    f"ret[{k}]", f"must be a byte count or an errno name, not {_describe(value)}"
                )
            elif not 0 <= value <= LLONG_MAX:
                raise r.err(
                    f"ret[{k}]",
                    f"{_show(value)} is out of range [0, {LLONG_MAX}] (a count or an "
                    "offset; failures are errno names)",
                )
        ret = tuple(ret)
    sizes = r.get("sizes", dict, {})
    for name, size in sizes.items():
        if name not in files:
            raise r.err(f"sizes.{_key(name)}", "no such file")
        if not _is_int(size):
            raise r.err(f"sizes.{name}", f"must be an integer, not {_describe(size)}")
        fs = files[name].fs
        if not 0 <= size <= _FS_TABLE[fs].s_maxbytes:
            raise r.err(
                f"sizes.{name}",
                f"{_show(size)} is out of range [0, {_FS_TABLE[fs].s_maxbytes}] "
                f"(s_maxbytes of {fs})",
            )
    consistent = r.get("consistent", bool, False)
    content = _parse_content(r, files)
    stale = _parse_stale(r, files) if "stale" in r.table else None
    return Expect(verdict, ret, dict(sizes), consistent, content, stale)


def _file_ranges(r: _Reader, key: str, files: dict[str, FileSpec]) -> dict[str, list[Any]]:
    """``key = { FILE = [entry, ...] }`` with every FILE a known file and every value a list."""
    table = r.get(key, dict, {})
    for name, entries in table.items():
        if name not in files:
            raise r.err(f"{key}.{_key(name)}", "no such file")
        if not isinstance(entries, list):
            raise r.err(f"{key}.{name}", f"must be a list of ranges, not {_describe(entries)}")
    return dict(table)


def _parse_content(
    r: _Reader, files: dict[str, FileSpec]
) -> dict[str, tuple[tuple[int, int, str], ...]]:
    out: dict[str, tuple[tuple[int, int, str], ...]] = {}
    for name, entries in _file_ranges(r, "content", files).items():
        ranges: list[tuple[int, int, str]] = []
        end_before = 0
        for k, entry in enumerate(entries):
            where = f"content.{name}[{k}]"
            if (
                not isinstance(entry, list)
                or len(entry) != 3
                or not _is_int(entry[0])
                or not _is_int(entry[1])
                or not isinstance(entry[2], str)
            ):
                raise r.err(where, f"must be [offset, length, spec], not {_describe(entry)}")
            offset, length, spec = entry
            if length > MAX_EXPECT_CONTENT:
                raise r.err(
                    where,
                    f"length {_show(length)} is over {MAX_EXPECT_CONTENT} (64 MiB): a longer "
                    "range says nothing a shorter one would not, and the judge compares it",
                )
            if offset < 0 or length < 0 or offset + length > MAX_LOFF:
                raise r.err(
                    where,
                    f"offset {_show(offset)} and length {_show(length)} must be >= 0 and end "
                    f"at most at {MAX_LOFF} (the largest loff_t)",
                )
            if not _DATA_RE.match(spec):
                raise r.err(where, f"{_show(spec)} is not zero, pattern, pattern:SEED or byte:0xNN")
            if offset < end_before:
                raise r.err(where, f"starts at {offset}, before the previous range ends")
            end_before = offset + length
            ranges.append((offset, length, spec))
        out[name] = tuple(ranges)
    return out


def _parse_stale(r: _Reader, files: dict[str, FileSpec]) -> dict[str, tuple[tuple[int, int], ...]]:
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for name, entries in _file_ranges(r, "stale", files).items():
        ranges: list[tuple[int, int]] = []
        for k, entry in enumerate(entries):
            where = f"stale.{name}[{k}]"
            if not isinstance(entry, list) or len(entry) != 2 or not all(map(_is_int, entry)):
                raise r.err(where, f"must be [start, end], not {_describe(entry)}")
            start, end = entry
            if not 0 <= start < end <= MAX_LOFF:
                raise r.err(
                    where,
                    f"[{_show(start)}, {_show(end)}) must satisfy 0 <= start < end <= {MAX_LOFF}",
                )
            # stale_ranges() reports ranges merged and sorted, so touching ranges could never
            # match: ask for them merged rather than fail every run.
            if ranges and start <= ranges[-1][1]:
                raise r.err(
                    where,
                    f"starts at {start}, not after the previous range's end {ranges[-1][1]} "
                    "(ranges must be sorted, apart and merged)",
                )
            ranges.append((start, end))
        out[name] = tuple(ranges)
    return out


def parse_scenario(
    doc: Mapping[str, Any], path: str = "<memory>", *, max_calls: int = MAX_CALLS
) -> Scenario:
    """Validate one scenario table. `max_calls` is raised only by callers whose input is the
    project's own bounded data (cost workloads, whose period is a benchmark's whole loop)."""
    if not isinstance(doc, Mapping):
        raise ScenarioError(path, "-", f"must be a table, not {_describe(doc)}")
    r = _Reader(path, "", dict(doc))
    r.check_keys(
        (
            "name",
            "description",
            "source",
            "file",
            "region",
            "call",
            "expect",
            "rlimit_fsize",
        )
    )
    name = r.get("name", str, required=True)
    if not _SCENARIO_NAME_RE.match(name):
        raise r.err(
            "name",
            f"{_show(name)} must be 1 to 100 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    description = r.text("description", MAX_DESCRIPTION, allow_newlines=True)
    source = r.text("source", MAX_SOURCE, allow_newlines=False)
    raw_files = r.counted_list("file", MAX_FILES, "each is a real file in the oracle")
    if not raw_files:
        raise r.err("file", "at least one [[file]] is required")
    files: dict[str, FileSpec] = {}
    for i, t in enumerate(raw_files):
        f = _parse_file(path, i, t)
        if f.name in files:
            raise ScenarioError(path, f"file[{i}].name", f"{f.name!r} is used twice")
        files[f.name] = f
    regions: dict[str, RegionSpec] = {}
    pages = 0
    raw_regions = r.counted_list("region", MAX_REGIONS, "each is one mmap")
    for i, t in enumerate(raw_regions):
        reg = _parse_region(path, i, t, files, pages)
        if reg.name in regions:
            raise ScenarioError(path, f"region[{i}].name", f"{reg.name!r} is used twice")
        regions[reg.name] = reg
        pages += reg.pages
    raw_calls = r.counted_list("call", max_calls, "each runs in every design and the kernel")
    if not raw_calls:
        raise r.err("call", "at least one [[call]] is required")
    calls = tuple(_parse_call(path, i, t, files, regions) for i, t in enumerate(raw_calls))
    _check_tasks(path, calls)
    niov = sum(len(c.iov) for c in calls)
    if niov > MAX_IOV_TOTAL:
        raise r.err("call", f"the calls have {niov} iov entries; at most {MAX_IOV_TOTAL} in all")
    expect = None
    by_design: dict[str, Expect] = {}
    if "expect" in r.table:
        raw = dict(r.get("expect", dict))
        designs = raw.pop("design", {})
        expect = _parse_expect(path, "expect", raw, len(calls), files)
        if not isinstance(designs, dict):
            raise ScenarioError(path, "expect.design", "must be a table of designs")
        for design, t in designs.items():
            if design not in DESIGN_NAMES:
                raise ScenarioError(
                    path,
                    f"expect.design.{_key(design)}",
                    f"unknown design (known: {', '.join(DESIGN_NAMES)})",
                )
            # A design inherits the top-level expectation, except that a run that does not end
            # ("deadlock", "livelock") has no return values, sizes or content to inherit.
            ends = not isinstance(t, dict) or t.get("verdict", "ok") not in _NEVER_ENDS
            inherit = raw if ends else {}
            merged = {**inherit, **t} if isinstance(t, dict) else t
            by_design[design] = _parse_expect(
                path, f"expect.design.{design}", merged, len(calls), files
            )
    rlimit = r.integer("rlimit_fsize", None, 0, RLIM_INFINITY, "RLIM_INFINITY is 2**64-1")
    return Scenario(
        name,
        description,
        source,
        tuple(files.values()),
        tuple(regions.values()),
        calls,
        expect,
        by_design,
        rlimit,
        path,
    )


class TomlFileError(Exception):
    """A TOML file that cannot be read or parsed; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_small_text(p: Path, max_bytes: int, what: str) -> str:
    """The file's text, refusing what is not a small regular UTF-8 file before reading it all."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise TomlFileError(f"cannot read: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TomlFileError(f"is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise TomlFileError("is not a regular file")
        if st.st_size > max_bytes:
            raise TomlFileError(f"is {st.st_size} bytes; a {what} has at most {max_bytes} bytes")
        chunks: list[bytes] = []
        got = 0
        while got <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise TomlFileError(f"cannot read: {e.strerror}") from e
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # it grew while we looked
        raise TomlFileError(f"has more than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TomlFileError(f"is not UTF-8 text (byte {e.start})") from e


def read_toml_file(
    path: str | Path, max_bytes: int = MAX_SCENARIO_BYTES, what: str = "scenario file"
) -> dict[str, Any]:
    """Read and parse a small TOML file from anywhere (scenarios, cost workloads and profiles);
    every failure is a TomlFileError with a one-line reason, never a traceback."""
    text = _read_small_text(Path(path), max_bytes, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TomlFileError(f"not valid TOML: {e}") from e
    except ValueError as e:
        # int() refuses integer literals of more than 4300 digits with a plain ValueError.
        raise TomlFileError(f"not valid TOML: {str(e).split(';')[0]}") from e
    except RecursionError as e:
        raise TomlFileError("not valid TOML: nested too deeply") from e
    except MemoryError as e:
        raise TomlFileError("not valid TOML: out of memory while parsing") from e


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; every failure is a ScenarioError."""
    p = Path(path)
    try:
        doc = read_toml_file(p)
    except TomlFileError as e:
        raise ScenarioError(str(p), "-", e.reason) from e
    try:
        return parse_scenario(doc, str(p))
    except RecursionError as e:
        raise ScenarioError(str(p), "-", "nested too deeply") from e
    except MemoryError as e:
        raise ScenarioError(str(p), "-", "out of memory while checking it") from e


def find_scenario(arg: str) -> Path:
    """A scenario named on the command line: an existing file, else a catalogue name (NAME or
    NAME.toml in the catalogue folder or its race/ folder, where the multi-task ones are)."""
    given = Path(arg)
    if given.is_file():
        return given
    # Only a bare name is looked up in the catalogue, so that no argument reaches outside it.
    if arg and _COMPONENT_RE.match(arg) and arg not in (".", ".."):
        catalogue = default_catalogue()
        for folder in (catalogue, catalogue / "race"):
            for candidate in (folder / arg, folder / f"{arg}.toml"):
                if candidate.is_file():
                    return candidate
    raise ScenarioError(arg, "-", "no such file or catalogue scenario")


def _pages(nbytes: int) -> int:
    return (nbytes + PAGE_SIZE - 1) >> PAGE_SHIFT


def _readable_after(regions: tuple[RegionSpec, ...]) -> dict[str, int]:
    """For each region, how many bytes can be read from its start on: the copy from user space
    runs on through the following regions and stops at the first hole or PROT_NONE page."""
    out: dict[str, int] = {}
    run = 0
    for r in reversed(regions):
        run = 0 if r.kind == "hole" or r.prot == "none" else run + r.length
        out[r.name] = run
    return out


def _call_count(call: CallSpec, readable: Mapping[str, int]) -> tuple[int, int]:
    """(bytes the call asks to write, bytes it can really copy).

    The asked count is the iov total capped at MAX_RW_COUNT, or nothing for a call the kernel
    refuses before copying (a negative iov_len or more than UIO_MAXIOV vectors: EINVAL from
    import_iovec()). What it can copy is further bounded by the readable user memory each
    entry starts in (``null`` and ``kernel`` have none): the copy stops at the first fault."""
    if call.op == "lseek" or len(call.iov) > UIO_MAXIOV:
        return 0, 0
    if any(v.length < 0 for v in call.iov):
        return 0, 0
    asked = min(sum(v.length for v in call.iov), MAX_RW_COUNT)
    copyable = sum(min(v.length, max(readable.get(v.region, 0) - v.offset, 0)) for v in call.iov)
    return asked, min(asked, copyable)


def _page_cache_span(count: int, max_folio_order: int) -> int:
    """Bytes of page cache (with per-folio overhead) a write of ``count`` bytes can create.

    The write loop asks for folios of at most floor(log2(remaining count)) (fgf_set_order()),
    capped at the filesystem's largest folio, so ``count`` bytes at any position lie in at most
    ceil(count / unit) + 1 folios of that unit."""
    unit = max(PAGE_SIZE, min(PAGE_SIZE << max_folio_order, 1 << (count.bit_length() - 1)))
    folios = math.ceil(count / unit) + 1
    return folios * (unit + FOLIO_OVERHEAD)


def memory_demand(scenario: Scenario) -> int:
    """Bytes the model (and the oracle) will materialize for this scenario, estimated up front.

    Follows what is really materialized, never sizes or page counts as such:
    - an initial file with data (not sparse) is page-cache pages: its size rounded up to pages;
    - each write call can fill up to min(iov total, MAX_RW_COUNT) bytes of page cache, and no
      more than its source can supply before the copy faults, in folios as large as the
      filesystem allows (``_page_cache_span``);
    - a touched anonymous page with non-zero data is a page; every present user page costs its
      page-table entry (PTE_OVERHEAD); untouched, zero and sparse memory costs nothing else;
    - an untouched file mapping pulls in at most the pages the calls read from it;
    - the ``[expect] content`` ranges of a design are filled to be compared.
    Pages that several of these count (a write over existing data) are counted each time: the
    estimate errs high.
    """
    total = 0
    for f in scenario.files:
        if not f.sparse:
            total += _pages(f.size) * (PAGE_SIZE + FOLIO_OVERHEAD)
    untouched_mappings = 0
    for r in scenario.regions:
        if r.touched:
            total += r.pages * PTE_OVERHEAD
            if r.kind == "anon" and not is_zero_data(r.data):
                total += r.length
        elif r.kind == "file":
            untouched_mappings += r.length
    readable = _readable_after(scenario.regions)
    read = 0
    for c in scenario.calls:
        asked, copyable = _call_count(c, readable)
        if asked:
            # Even a copy that faults at once has had write_begin() create its first folio.
            fs = _FS_TABLE[scenario.file(c.file).fs]
            total += _page_cache_span(max(copyable, 1), fs.max_folio_order)
            # The source may start in the middle of a page: one more page faulted in.
            read += copyable + PAGE_SIZE
    # Faulting the source in maps a page-table entry for each page read (the zero page for
    # untouched anonymous memory), and a page-cache page for a file mapping.
    total += _pages(read) * PTE_OVERHEAD
    total += _pages(min(untouched_mappings, read)) * (PAGE_SIZE + FOLIO_OVERHEAD)
    # Designs are judged one after the other: the largest expectation counts.
    expectations = [scenario.expect, *scenario.expect_by_design.values()]
    total += max(
        (sum(n for ranges in e.content.values() for _, n, _ in ranges) for e in expectations if e),
        default=0,
    )
    return total


def check_memory(scenario: Scenario, limit: int) -> None:
    """Refuse a scenario whose ``memory_demand`` is above ``limit`` bytes."""
    need = memory_demand(scenario)
    if need > limit:
        mib = 1 << 20
        raise ScenarioError(
            scenario.path,
            "-",
            f"needs about {-(-need // mib)} MiB of memory (page cache and user pages it "
            f"materializes), above --max-memory {limit // mib} MiB",
        )


def default_catalogue() -> Path:
    """The ``scenarios/`` folder of a source checkout, else a wheel's copy (``datadirs``)."""
    return data_dir("scenarios")


def load_catalogue(paths: Iterable[str | Path] | None = None) -> list[Scenario]:
    """Load scenario files and folders (default: the catalogue); names must be unique."""
    targets = [Path(p) for p in paths] if paths else [default_catalogue()]
    files: list[Path] = []
    for t in targets:
        files.extend(sorted(t.glob("*.toml")) if t.is_dir() else [t])
    seen: dict[str, str] = {}
    out: list[Scenario] = []
    for f in files:
        s = load_scenario(f)
        if s.name in seen:
            raise ScenarioError(str(f), "name", f"{s.name!r} is already used by {seen[s.name]}")
        seen[s.name] = str(f)
        out.append(s)
    return out
