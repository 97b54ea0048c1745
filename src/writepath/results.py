"""What one run of a scenario produced, on the model or on the real kernel."""

from __future__ import annotations

import errno as errno_mod
import hashlib
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


@dataclass(frozen=True)
class FileState:
    """A file's size and content; ``pages`` holds only pages that are not all zeros, each
    exactly PAGE_SIZE bytes (the last one zero-padded past ``size``)."""

    size: int
    pages: dict[int, bytes] = field(default_factory=dict)

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray()
        end = min(offset + length, self.size)
        while offset < end:
            index, off = divmod(offset, PAGE_SIZE)
            k = min(PAGE_SIZE - off, end - offset)
            page = self.pages.get(index)
            out += page[off : off + k] if page is not None else bytes(k)
            offset += k
        return bytes(out)

    def sha256(self) -> str | None:
        if self.size > SHA256_LIMIT:
            return None
        h = hashlib.sha256()
        zero = bytes(PAGE_SIZE)
        last = (self.size + PAGE_SIZE - 1) // PAGE_SIZE
        for index in range(last):
            page = self.pages.get(index, zero)
            n = min(PAGE_SIZE, self.size - index * PAGE_SIZE)
            h.update(page[:n])
        return h.hexdigest()

    def digest(self) -> str:
        """sha256 of the size and of each non-zero page with its index: cheap for sparse files."""
        h = hashlib.sha256(b"%d;" % self.size)
        for index in sorted(self.pages):
            h.update(index.to_bytes(8, "little"))
            h.update(self.pages[index])
        return h.hexdigest()

    def first_difference(self, other: FileState) -> int | None:
        """The first byte offset at which two contents differ (None if equal); sizes too."""
        indexes = sorted(set(self.pages) | set(other.pages))
        for index in indexes:
            a = self.pages.get(index, bytes(PAGE_SIZE))
            b = other.pages.get(index, bytes(PAGE_SIZE))
            if a != b:
                k = next(j for j in range(PAGE_SIZE) if a[j] != b[j])
                return index * PAGE_SIZE + k
        if self.size != other.size:
            return min(self.size, other.size)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256(), "digest": self.digest()}


def pages_from_bytes(content: bytes, base_index: int = 0) -> dict[int, bytes]:
    """Split content into the non-zero pages FileState keeps."""
    out: dict[int, bytes] = {}
    for k in range(0, len(content), PAGE_SIZE):
        page = content[k : k + PAGE_SIZE]
        if page.count(0) != len(page):
            out[base_index + k // PAGE_SIZE] = page.ljust(PAGE_SIZE, b"\0")
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
