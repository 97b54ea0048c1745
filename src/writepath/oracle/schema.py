"""The child's result, as the parent accepts it: JSON, checked field by field.

The child runs the scenario's calls, so its output is treated as untrusted: it is parsed as JSON
(never unpickled), bounded in size, and every field is checked against the scenario before a
``RunResult`` is built from it. Anything unexpected is a ``MalformedResult``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from writepath.kernel.constants import LLONG_MAX, PAGE_SIZE
from writepath.results import CallResult, FileState
from writepath.scenario import Scenario

#: The most the parent reads from a child: the shipped content (64 MiB) in base64, and room.
MAX_RESULT_BYTES = 128 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KNOWN_SIGNALS = frozenset({"SIGXFSZ"})


class MalformedResult(ValueError):
    """The child's answer does not have the agreed shape."""


def _int(value: Any, lo: int, hi: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise MalformedResult(f"{what}: {value!r} is not an integer in [{lo}, {hi}]")
    return value


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResult(f"{what}: not an object")
    return value


def decode_json(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_RESULT_BYTES:
        raise MalformedResult(f"result of {len(raw)} bytes exceeds {MAX_RESULT_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedResult(f"not JSON: {e}") from e
    return _dict(doc, "result")


def decode_calls(scenario: Scenario, raw: Any) -> list[CallResult]:
    if not isinstance(raw, list) or len(raw) != len(scenario.calls):
        raise MalformedResult(f"calls: expected a list of {len(scenario.calls)}")
    out: list[CallResult] = []
    for k, (spec, item) in enumerate(zip(scenario.calls, raw, strict=True)):
        item = _dict(item, f"calls[{k}]")
        if set(item) != {"op", "ret", "errno", "signals"} or item["op"] != spec.op:
            raise MalformedResult(f"calls[{k}]: wrong fields or op")
        ret = _int(item["ret"], -1, LLONG_MAX, f"calls[{k}].ret")
        err = _int(item["errno"], 0, 4095, f"calls[{k}].errno")
        sigs = item["signals"]
        if not isinstance(sigs, list) or not set(sigs) <= _KNOWN_SIGNALS:
            raise MalformedResult(f"calls[{k}].signals: {sigs!r}")
        if (ret < 0) != (err != 0):
            raise MalformedResult(f"calls[{k}]: ret {ret} with errno {err}")
        out.append(CallResult.from_kernel_ret(spec.op, ret if ret >= 0 else -err, tuple(sigs)))
    return out


def decode_file(name: str, raw: Any) -> FileState:
    item = _dict(raw, f"files.{name}")
    if set(item) != {"size", "sha256", "digest", "pages", "stale"}:
        raise MalformedResult(f"files.{name}: wrong fields")
    size = _int(item["size"], 0, LLONG_MAX, f"files.{name}.size")
    npages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    sha, digest = item["sha256"], item["digest"]
    if not (sha is None or (isinstance(sha, str) and _HEX64.match(sha))):
        raise MalformedResult(f"files.{name}.sha256: {sha!r}")
    if not (isinstance(digest, str) and _HEX64.match(digest)):
        raise MalformedResult(f"files.{name}.digest: {digest!r}")
    stale = decode_stale(name, item["stale"], size)
    if item["pages"] is None:
        return FileState.from_digests(size, sha, digest, stale)
    pages: dict[int, bytes] = {}
    for key, b64 in _dict(item["pages"], f"files.{name}.pages").items():
        if not key.isdigit() or not isinstance(b64, str):
            raise MalformedResult(f"files.{name}.pages: bad entry {key!r}")
        index = int(key)
        try:
            page = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MalformedResult(f"files.{name}.pages[{key}]: {e}") from e
        if index >= npages or len(page) != PAGE_SIZE:
            raise MalformedResult(f"files.{name}.pages[{key}]: outside the file or not a page")
        pages[index] = page
    state = FileState(size, pages, stale=stale)
    if state.digest() != digest or (sha is not None and state.sha256() != sha):
        raise MalformedResult(f"files.{name}: content does not match its digest")
    return state


def decode_stale(name: str, raw: Any, size: int) -> tuple[tuple[int, int], ...]:
    """Sorted, disjoint, non-empty [start, end) ranges inside the file."""
    if not isinstance(raw, list) or len(raw) > 1 << 20:
        raise MalformedResult(f"files.{name}.stale: not a list of ranges")
    out: list[tuple[int, int]] = []
    for k, r in enumerate(raw):
        if not isinstance(r, list) or len(r) != 2:
            raise MalformedResult(f"files.{name}.stale[{k}]: not [start, end]")
        lo = _int(r[0], out[-1][1] if out else 0, size, f"files.{name}.stale[{k}]")
        hi = _int(r[1], lo + 1, size, f"files.{name}.stale[{k}]")
        out.append((lo, hi))
    return tuple(out)


def decode_files(scenario: Scenario, raw: Any) -> dict[str, FileState]:
    files = _dict(raw, "files")
    if set(files) != {f.name for f in scenario.files}:
        raise MalformedResult("files: not the scenario's files")
    return {f.name: decode_file(f.name, files[f.name]) for f in scenario.files}


#: Events kept per call, at most (a catalogue scenario needs a few hundred).
MAX_TRACE_EVENTS = 100_000


def decode_traces(scenario: Scenario, raw: Any) -> list[tuple[str, ...]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != len(scenario.calls):
        raise MalformedResult("traces: not one list per call")
    out: list[tuple[str, ...]] = []
    for k, events in enumerate(raw):
        if not isinstance(events, list) or len(events) > MAX_TRACE_EVENTS:
            raise MalformedResult(f"traces[{k}]: not a bounded list")
        if not all(isinstance(e, str) and len(e) < 512 for e in events):
            raise MalformedResult(f"traces[{k}]: not short strings")
        out.append(tuple(events))
    return out


def decode_fstypes(scenario: Scenario, raw: Any) -> dict[str, str]:
    types = _dict(raw, "fstypes")
    if set(types) != {f.name for f in scenario.files} or not all(
        isinstance(v, str) and len(v) < 64 for v in types.values()
    ):
        raise MalformedResult("fstypes: not one short name per file")
    return dict(types)
