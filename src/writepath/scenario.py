"""Scenario files: TOML in, frozen dataclasses out, with errors that name file, field and reason.

The format is a public contract (README "Scenario files"); every field is checked here so that
the model and the real-kernel oracle can trust what they are given. Unknown keys are errors: a
misspelt field must not silently fall back to a default.
"""

from __future__ import annotations

import errno as errno_mod
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from writepath.kernel.constants import PAGE_SIZE

FILESYSTEMS = ("tmpfs", "ramfs", "ext4", "xfs")
REGION_KINDS = ("anon", "file", "hole")
PROTS = ("r", "rw", "none")
OPS = ("write", "pwrite", "writev", "pwritev", "lseek")
OPEN_FLAGS = ("O_APPEND", "O_RDONLY", "O_WRONLY", "O_RDWR")
WHENCES = ("SEEK_SET", "SEEK_CUR", "SEEK_END")
VERDICTS = ("ok", "deadlock", "livelock", "stale-data")
SPECIAL_REGIONS = ("null", "kernel")
_NEVER_ENDS = ("deadlock", "livelock")
DESIGN_NAMES = ("v6.13", "v6.14", "no-fault-in", "faulting-copy", "any-byte-check")

_DATA_RE = re.compile(r"^(zero|pattern|pattern:\d+|byte:0x[0-9a-fA-F]{1,2})$")

# The largest file offset any filesystem can address: loff_t is a signed 64-bit integer, and
# MAX_LFS_FILESIZE (include/linux/fs.h) is LLONG_MAX on 64-bit machines.
MAX_LOFF = (1 << 63) - 1


class ScenarioError(ValueError):
    """A scenario that cannot be run: ``path: field: reason``."""

    def __init__(self, path: str, field_name: str, reason: str) -> None:
        super().__init__(f"{path}: {field_name}: {reason}")
        self.path = path
        self.field = field_name
        self.reason = reason


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
        return True


class _Reader:
    """Field access on one TOML table with errors that say where."""

    def __init__(self, path: str, where: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ScenarioError(path, where, f"must be a table, not {type(table).__name__}")
        self.path, self.where, self.table = path, where, table

    def field_name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def err(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.path, self.field_name(key), reason)

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.table:
            if key not in allowed:
                raise self.err(key, f"unknown field (allowed: {', '.join(sorted(allowed))})")

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
        if isinstance(value, bool) and kind is int:
            raise self.err(key, f"must be an integer, not {value!r}")
        if not isinstance(value, kind):
            name = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.err(key, f"must be {name}, not {type(value).__name__} {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.err(key, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)


def _data_spec(r: _Reader, key: str, default: str) -> str:
    value = r.get(key, str, default)
    if not _DATA_RE.match(value):
        raise r.err(key, f"{value!r} is not zero, pattern, pattern:SEED or byte:0xNN")
    return str(value)


def _parse_file(path: str, i: int, table: Any) -> FileSpec:
    r = _Reader(path, f"file[{i}]", table)
    r.check_keys(("name", "fs", "size", "data", "cached"))
    name = r.get("name", str, required=True)
    if name in SPECIAL_REGIONS or not name:
        raise r.err("name", f"{name!r} is reserved")
    fs = r.choice("fs", FILESYSTEMS, "tmpfs")
    size = r.get("size", int, 0)
    if size < 0:
        raise r.err("size", f"must be >= 0, not {size}")
    data = _data_spec(r, "data", "pattern")
    cached = r.get("cached", bool, True)
    if not cached and fs in ("tmpfs", "ramfs") and not is_zero_data(data) and size:
        raise r.err(
            "cached",
            f"{fs} keeps file data only in the page cache; a file with data cannot be uncached",
        )
    return FileSpec(name, fs, size, data, cached)


def _parse_region(path: str, i: int, table: Any, files: dict[str, FileSpec]) -> RegionSpec:
    r = _Reader(path, f"region[{i}]", table)
    r.check_keys(("name", "pages", "kind", "file", "offset", "shared", "prot", "touched", "data"))
    name = r.get("name", str, required=True)
    if name in SPECIAL_REGIONS or not name:
        raise r.err("name", f"{name!r} is reserved")
    pages = r.get("pages", int, 1)
    if pages < 1:
        raise r.err("pages", f"must be at least 1, not {pages}")
    kind = r.choice("kind", REGION_KINDS, "anon")
    prot = r.choice("prot", PROTS, "rw")
    touched = r.get("touched", bool, False)
    shared = r.get("shared", bool, True)
    file_name = None
    offset = 0
    if kind == "file":
        file_name = r.get("file", str, required=True)
        if file_name not in files:
            raise r.err("file", f"no [[file]] is named {file_name!r}")
        offset = r.get("offset", int, 0)
        if offset < 0 or offset % PAGE_SIZE:
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


def _parse_call(
    path: str,
    i: int,
    table: Any,
    files: dict[str, FileSpec],
    regions: dict[str, RegionSpec],
) -> CallSpec:
    r = _Reader(path, f"call[{i}]", table)
    r.check_keys(("op", "file", "iov", "pos", "flags", "whence", "fd"))
    op = r.choice("op", OPS)
    file_name = r.get("file", str, next(iter(files)))
    if file_name not in files:
        raise r.err("file", f"no [[file]] is named {file_name!r}")
    raw_iov = r.get("iov", list, [])
    iov: list[IovSpec] = []
    for k, entry in enumerate(raw_iov):
        where = f"iov[{k}]"
        if (
            not isinstance(entry, list)
            or len(entry) != 3
            or not isinstance(entry[0], str)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in entry[1:])
        ):
            raise r.err(where, f"must be [region, offset, length], not {entry!r}")
        region, offset, length = entry
        if region not in regions and region not in SPECIAL_REGIONS:
            raise r.err(where, f"no [[region]] is named {region!r} (nor is it null or kernel)")
        if region in regions and offset < 0:
            raise r.err(where, f"offset {offset} lies before region {region!r}")
        if length < 0 and op in ("write", "pwrite"):
            raise r.err(where, "a write length is a size_t; use writev for a negative iov_len")
        iov.append(IovSpec(region, offset, length))
    if op in ("write", "pwrite") and len(iov) != 1:
        raise r.err("iov", f"{op} takes exactly one [region, offset, length]")
    if op == "lseek" and iov:
        raise r.err("iov", "lseek takes no iov")
    pos = r.get("pos", int, 0)
    flags = r.get("flags", list, [])
    for flag in flags:
        if flag not in OPEN_FLAGS:
            raise r.err("flags", f"{flag!r} is not one of {', '.join(OPEN_FLAGS)}")
    whence = r.choice("whence", WHENCES, "SEEK_SET")
    fd = r.get("fd", int, None)
    return CallSpec(op, file_name, tuple(iov), pos, tuple(flags), whence, fd)


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
                if not hasattr(errno_mod, value):
                    raise r.err(f"ret[{k}]", f"{value!r} is not an errno name")
            elif not isinstance(value, int) or isinstance(value, bool):
                raise r.err(f"ret[{k}]", f"must be a byte count or an errno name, not {value!r}")
        ret = tuple(ret)
    sizes = r.get("sizes", dict, {})
    for name, size in sizes.items():
        if name not in files:
            raise r.err(f"sizes.{name}", "no such file")
        if not isinstance(size, int) or isinstance(size, bool):
            raise r.err(f"sizes.{name}", f"must be an integer, not {size!r}")
    consistent = r.get("consistent", bool, False)
    content = _parse_content(r, files)
    stale = _parse_stale(r, files) if "stale" in r.table else None
    return Expect(verdict, ret, dict(sizes), consistent, content, stale)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _file_ranges(r: _Reader, key: str, files: dict[str, FileSpec]) -> dict[str, list[Any]]:
    """``key = { FILE = [entry, ...] }`` with every FILE a known file and every value a list."""
    table = r.get(key, dict, {})
    for name, entries in table.items():
        if name not in files:
            raise r.err(f"{key}.{name}", "no such file")
        if not isinstance(entries, list):
            raise r.err(f"{key}.{name}", f"must be a list of ranges, not {entries!r}")
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
                raise r.err(where, f"must be [offset, length, spec], not {entry!r}")
            offset, length, spec = entry
            if offset < 0 or length < 0 or offset + length > MAX_LOFF:
                raise r.err(
                    where,
                    f"offset {offset} and length {length} must be >= 0 and end at most at "
                    f"{MAX_LOFF} (the largest loff_t)",
                )
            if not _DATA_RE.match(spec):
                raise r.err(where, f"{spec!r} is not zero, pattern, pattern:SEED or byte:0xNN")
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
                raise r.err(where, f"must be [start, end], not {entry!r}")
            start, end = entry
            if not 0 <= start < end <= MAX_LOFF:
                raise r.err(where, f"[{start}, {end}) must satisfy 0 <= start < end <= {MAX_LOFF}")
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


def parse_scenario(doc: Mapping[str, Any], path: str = "<memory>") -> Scenario:
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
    if not re.match(r"^[a-z0-9][a-z0-9._-]*$", name):
        raise r.err("name", f"{name!r} must be lower-case letters, digits, '.', '_' or '-'")
    description = r.get("description", str, "")
    source = r.get("source", str, "")
    raw_files = r.get("file", list, [])
    if not raw_files:
        raise r.err("file", "at least one [[file]] is required")
    files: dict[str, FileSpec] = {}
    for i, t in enumerate(raw_files):
        f = _parse_file(path, i, t)
        if f.name in files:
            raise ScenarioError(path, f"file[{i}].name", f"{f.name!r} is used twice")
        files[f.name] = f
    regions: dict[str, RegionSpec] = {}
    for i, t in enumerate(r.get("region", list, [])):
        reg = _parse_region(path, i, t, files)
        if reg.name in regions:
            raise ScenarioError(path, f"region[{i}].name", f"{reg.name!r} is used twice")
        regions[reg.name] = reg
    raw_calls = r.get("call", list, [])
    if not raw_calls:
        raise r.err("call", "at least one [[call]] is required")
    calls = tuple(_parse_call(path, i, t, files, regions) for i, t in enumerate(raw_calls))
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
                    f"expect.design.{design}",
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
    rlimit = r.get("rlimit_fsize", int, None)
    if rlimit is not None and rlimit < 0:
        raise r.err("rlimit_fsize", "must be >= 0")
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


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(str(p), "-", f"cannot read: {e.strerror}") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(p), "-", f"not valid TOML: {e}") from e
    return parse_scenario(doc, str(p))


def default_catalogue() -> Path:
    """The ``scenarios/`` folder of a source checkout (or the current directory's)."""
    here = Path(__file__).resolve().parents[2] / "scenarios"
    return here if here.is_dir() else Path("scenarios")


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
