"""Expected file content of a write whose source maps the file being written.

The rule, from the kernel: the copy (copy_folio_from_iter_atomic() → raw_copy_from_user(), rep
movsb on x86) moves bytes front to back, vector after vector, chunk after chunk in file order;
a source byte is read when its turn comes, so one the same call already overwrote is read in
its new value. A source byte past EOF but inside the page that holds EOF reads as zero. This
module replays that rule on the scenario's data spec, byte by byte (the files are a few pages),
and states the result as ``[expect] content`` ranges.
"""

from __future__ import annotations

from typing import Any

PATTERN_PERIOD = 251


def pattern(spec: str, length: int) -> bytearray:
    """The data spec ``pattern`` / ``pattern:SEED`` of scenario files: byte k = (k+SEED)%251+1."""
    seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
    return bytearray((k + seed) % PATTERN_PERIOD + 1 for k in range(length))


def replay_self_copy(
    initial: bytearray, pos: int, segments: list[tuple[int, int]], written: int
) -> bytearray:
    """The file after writing ``written`` bytes at ``pos`` from ``segments`` (file offsets and
    lengths of the source, through a mapping of the same file at offset 0), front to back."""
    cur = bytearray(initial)
    dst = pos
    left = written
    for src, length in segments:
        for j in range(min(length, left)):
            byte = cur[src + j] if src + j < len(cur) else 0
            if dst >= len(cur):
                cur.extend(bytes(dst + 1 - len(cur)))
            cur[dst] = byte
            dst += 1
        left -= min(length, left)
    return cur


def content_ranges(data: bytes) -> list[list[Any]]:
    """``[offset, length, SPEC]`` ranges that together state ``data`` exactly: the longest run
    of a pattern, of one repeated byte, or of zeros, at each step."""
    out: list[list[Any]] = []
    i = 0
    while i < len(data):
        first = data[i]
        seed = (first - 1) % PATTERN_PERIOD
        n_pat = 0
        while i + n_pat < len(data) and data[i + n_pat] == (n_pat + seed) % PATTERN_PERIOD + 1:
            n_pat += 1
        n_same = 0
        while i + n_same < len(data) and data[i + n_same] == first:
            n_same += 1
        if n_pat >= n_same:
            out.append([i, n_pat, "pattern" if seed == 0 else f"pattern:{seed}"])
            i += n_pat
        else:
            out.append([i, n_same, "zero" if first == 0 else f"byte:0x{first:02x}"])
            i += n_same
    return out


def add_self_copy_content(s: dict[str, Any]) -> None:
    """State ``[expect] content`` for a scenario whose one pwrite/pwritev takes every source
    byte from mappings of the file it writes, and whose expected return is a count; any other
    scenario is left alone. The content is inherited by the designs that finish."""
    calls = s.get("call", [])
    expect = s.get("expect", {})
    if len(calls) != 1 or calls[0]["op"] not in ("pwrite", "pwritev"):
        return
    call = calls[0]
    target = call.get("file", s["file"][0]["name"])
    regions = {r["name"]: r for r in s.get("region", [])}
    segments: list[tuple[int, int]] = []
    for name, offset, length in call["iov"]:
        r = regions.get(name)
        if r is None or r["kind"] != "file" or r["file"] != target:
            return
        segments.append((r["offset"] + offset, length))
    ret = expect.get("ret", [None])[0]
    if not isinstance(ret, int) or isinstance(ret, bool):
        return
    spec = next(f for f in s["file"] if f["name"] == target)
    if not spec["data"].startswith("pattern"):
        return
    data = replay_self_copy(pattern(spec["data"], spec["size"]), call["pos"], segments, ret)
    expect["content"] = {target: content_ranges(bytes(data))}
