"""What one run of a scenario produced, on the model or on the real kernel."""

from __future__ import annotations

import bisect
import errno as errno_mod
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from writepath.kernel.constants import PAGE_SIZE
from writepath.kernel.tracepoints import Event

#: Files up to this size get a sha256 of their whole content; larger (sparse) ones only a digest.
SHA256_LIMIT = 64 << 20


@dataclass(frozen=True)
class CallResult:
    op: str
    ret: int | None  # None: the call never returned (the run deadlocked or livelocked in it)
    errno: str | None = None
    signals: tuple[str, ...] = ()
    #: The tracepoints the call fired, in the contract's form (README "Tracepoints"); None
    #: where no trace was taken.
    trace: tuple[str, ...] | None = None

    @classmethod
    def from_kernel_ret(cls, op: str, ret: int, signals: tuple[str, ...] = ()) -> CallResult:
        if ret < 0:
            return cls(op, -1, errno_mod.errorcode.get(-ret, str(-ret)), signals)
        return cls(op, ret, None, signals)

    def as_expected(self) -> int | str | None:
        """The form ``[expect] ret`` uses: a count or an errno name."""
        return self.errno if self.errno else self.ret

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "ret": self.ret, "errno": self.errno}
        if self.signals:
            out["signals"] = list(self.signals)
        if self.trace is not None:
            out["trace"] = list(self.trace)
        return out


#: A page of file content as FileState holds it: bytes, or a view into a model folio.
PageData = bytes | bytearray | memoryview

#: [start, end) byte ranges, sorted and disjoint.
Ranges = tuple[tuple[int, int], ...]

_ZERO_PAGE = bytes(PAGE_SIZE)

#: sha256() feeds runs of zero pages in chunks of this size, never the whole run at once.
_ZERO_CHUNK = bytes(1 << 20)


@dataclass(frozen=True)
class FileState:
    """A file's size and content.

    ``pages`` holds only pages that are not all zeros, each exactly PAGE_SIZE bytes (the last
    one zero-padded past ``size``). A page may be a memoryview into the model's page cache: the
    state then shares the folio's memory instead of copying it, and describes the file as it is
    when the run has ended (running the machine further would change it). ``pages`` is None when
    the content was not kept (a file too large to ship from the oracle); then ``sha256_hex`` and
    ``digest_hex`` stand for it.

    ``stale`` lists the [start, end) byte ranges inside ``size`` that hold uninitialized memory.
    Their bytes are unknowable (on the real kernel they are whatever the memory held), so every
    view of the content (``read``, ``sha256``, ``digest``) reads them as zeros; whether two
    files have the same stale ranges is compared separately.
    """

    size: int
    pages: Mapping[int, PageData] | None = field(default_factory=dict)
    stale: Ranges = ()
    sha256_hex: str | None = None
    digest_hex: str | None = None

    @classmethod
    def from_digests(cls, size: int, sha256: str | None, digest: str, stale: Ranges) -> FileState:
        """A file known only by its digests (the oracle could not ship its content whole)."""
        return cls(size, None, tuple(stale), sha256, digest)

    def _page(self, index: int) -> PageData | None:
        """Page ``index`` with its stale bytes zeroed; None for a page of zeros."""
        assert self.pages is not None
        page = self.pages.get(index)
        if page is None or not self.stale:
            return page
        start = index * PAGE_SIZE
        overlapping = _overlaps(self.stale, start, start + PAGE_SIZE)
        if not overlapping:
            return page
        masked = bytearray(page)
        for s, e in overlapping:
            lo, hi = max(s, start) - start, min(e, start + PAGE_SIZE) - start
            masked[lo:hi] = bytes(hi - lo)
        return None if masked.count(0) == PAGE_SIZE else bytes(masked)

    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset + length) as a reader sees them (stale bytes as zeros); empty
        when the content was not kept."""
        if self.pages is None:
            return b""
        out = bytearray()
        end = min(offset + length, self.size)
        while offset < end:
            index, off = divmod(offset, PAGE_SIZE)
            k = min(PAGE_SIZE - off, end - offset)
            page = self._page(index)
            out += page[off : off + k] if page is not None else bytes(k)
            offset += k
        return bytes(out)

    def sha256(self) -> str | None:
        """sha256 of the whole content, streamed page by page; None above SHA256_LIMIT."""
        if self.pages is None:
            return self.sha256_hex
        if self.size > SHA256_LIMIT:
            return None
        h = hashlib.sha256()
        done = 0  # bytes hashed so far
        for index in sorted(self.pages):
            start = index * PAGE_SIZE
            if start >= self.size:
                break
            _hash_zeros(h, start - done)
            page = self._page(index)
            n = min(PAGE_SIZE, self.size - start)
            h.update(page[:n] if page is not None else _ZERO_PAGE[:n])
            done = start + n
        _hash_zeros(h, self.size - done)
        return h.hexdigest()

    def digest(self) -> str:
        """sha256 of the size and of each non-zero page with its index: cheap for sparse files."""
        if self.pages is None:
            assert self.digest_hex is not None, "a FileState without pages needs its digest"
            return self.digest_hex
        h = hashlib.sha256(b"%d;" % self.size)
        for index in sorted(self.pages):
            page = self._page(index)
            if page is None:
                continue
            h.update(index.to_bytes(8, "little"))
            h.update(page)
        return h.hexdigest()

    def first_difference(self, other: FileState) -> int | None:
        """The first byte offset at which two files differ, or None if they agree.

        Content is compared page by page where both sides kept it; where one side has only
        digests, the digests are compared, and a difference is reported at offset 0 because
        where it lies is unknown (``difference`` says so in words). Then the sizes (the end of
        the shorter file), then the stale ranges (the first byte stale in one and not the other).
        """
        if self.pages is not None and other.pages is not None:
            for index in sorted(set(self.pages) | set(other.pages)):
                a = self._page(index)
                b = other._page(index)
                if a is None and b is None:
                    continue
                # One transient page copy each: comparing bytes is a memcmp, comparing
                # memoryviews goes element by element.
                a = _ZERO_PAGE if a is None else bytes(a)
                b = _ZERO_PAGE if b is None else bytes(b)
                if a != b:
                    k = next(j for j in range(PAGE_SIZE) if a[j] != b[j])
                    return index * PAGE_SIZE + k
        elif self.size == other.size and self.digest() != other.digest():
            return 0
        if self.size != other.size:
            return min(self.size, other.size)
        return _first_range_difference(self.stale, other.stale)

    def difference(self, other: FileState) -> str | None:
        """``first_difference`` in words; None if the files agree."""
        offset = self.first_difference(other)
        if offset is None:
            return None
        if self.pages is not None and other.pages is not None:
            a, b = self.read(offset, 1), other.read(offset, 1)
            if a != b and offset < min(self.size, other.size):
                return f"byte {offset}: {a.hex()} vs {b.hex()}"
        elif self.size == other.size and self.digest() != other.digest():
            return "content differs (only digests known: no offset)"
        if self.size != other.size:
            return f"size {self.size} vs {other.size}"
        return f"stale ranges {_ranges_json(self.stale)} vs {_ranges_json(other.stale)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "sha256": self.sha256(),
            "digest": self.digest(),
            "stale": _ranges_json(self.stale),
        }


def _hash_zeros(h: Any, n: int) -> None:
    while n > 0:
        k = min(n, len(_ZERO_CHUNK))
        h.update(_ZERO_CHUNK[:k])
        n -= k


def _overlaps(ranges: Ranges, start: int, end: int) -> list[tuple[int, int]]:
    """The ranges of a sorted disjoint list that meet [start, end)."""
    i = bisect.bisect_right(ranges, (start, start)) - 1
    out = []
    for s, e in ranges[max(i, 0) :]:
        if s >= end:
            break
        if e > start:
            out.append((s, e))
    return out


def _first_range_difference(a: Ranges, b: Ranges) -> int | None:
    """The first offset covered by exactly one of two sorted disjoint range lists."""
    if a == b:
        return None
    # Walk the boundaries in order; coverage can first differ only at a boundary.
    points = sorted({p for r in (*a, *b) for p in r})
    for p in points:
        if _covers(a, p) != _covers(b, p):
            return p
    return None  # same coverage written differently (adjacent ranges not merged)


def _covers(ranges: Ranges, offset: int) -> bool:
    i = bisect.bisect_right(ranges, (offset, 1 << 64)) - 1
    return i >= 0 and ranges[i][0] <= offset < ranges[i][1]


def _ranges_json(ranges: Ranges) -> list[list[int]]:
    return [[s, e] for s, e in ranges]


def pages_from_bytes(content: bytes, base_index: int = 0) -> dict[int, bytes]:
    """Split content into the non-zero pages FileState keeps."""
    out: dict[int, bytes] = {}
    view = memoryview(content)
    for k in range(0, len(content), PAGE_SIZE):
        n = min(PAGE_SIZE, len(content) - k)
        if content.count(0, k, k + n) == n:
            continue
        if n == PAGE_SIZE:
            out[base_index + k // PAGE_SIZE] = bytes(view[k : k + n])
        else:
            out[base_index + k // PAGE_SIZE] = bytes(view[k : k + n]) + bytes(PAGE_SIZE - n)
    return out


@dataclass
class RunResult:
    """One scenario under one design (or on the real kernel: design "kernel")."""

    scenario: str
    design: str
    verdict: str
    calls: list[CallResult]
    files: dict[str, FileState]
    evidence: str = ""
    counters: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: The model's event log of the calls (not in the JSON; ``writepath trace`` renders it).
    events: list[Event] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "design": self.design,
            "verdict": self.verdict,
            "calls": [c.to_json() for c in self.calls],
            "files": {name: f.to_json() for name, f in self.files.items()},
        }
        if self.evidence:
            out["evidence"] = self.evidence
        if self.counters is not None:
            out["counters"] = self.counters
        out.update(self.extra)
        return out
