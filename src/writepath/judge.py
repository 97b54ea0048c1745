"""Judge a run against its scenario: the stated ``[expect]``, and the consistency property.

The consistency property is LTP writev07's, stated without the model: after each call that
returns n >= 0, the file holds the first n source bytes at the write position and nothing else
changed; after a call that fails, no byte changed. The one change the kernel itself makes on a
failed write is allowed: since 665575cff098 a write whose first copy faults at a position beyond
EOF still moves i_size up to that position (write_end sets i_size = pos + 0), so the file may
grow to ``pos`` with zeros. Expected bytes come from the scenario (the data specs), never from
the model's own state.
"""

from __future__ import annotations

from writepath.results import FileState, RunResult, pages_from_bytes
from writepath.scenario import CallSpec, Scenario, fill

#: Cap on how much content the property reconstructs (it holds the files in memory).
_MAX_JUDGED = 64 << 20


def _initial_content(scenario: Scenario) -> dict[str, bytearray]:
    return {
        f.name: bytearray(fill(f.data, f.size)) if f.size <= _MAX_JUDGED else bytearray()
        for f in scenario.files
    }


def _source_bytes(scenario: Scenario, call: CallSpec, files: dict[str, bytearray]) -> bytes | None:
    """What the call's source reads as, as far as it is readable; None if it aliases a file
    that is written in this scenario (then the bytes may change during the copy)."""
    written = {c.file for c in scenario.calls if c.op != "lseek"}
    out = bytearray()
    for v in call.iov:
        if v.length <= 0:
            continue
        if v.region in ("null", "kernel"):
            break
        regions = list(scenario.regions)
        idx = next(k for k, r in enumerate(regions) if r.name == v.region)
        offset, length = v.offset, v.length
        # The range may run on into the regions after this one.
        while length > 0 and idx < len(regions):
            r = regions[idx]
            if offset >= r.length:
                offset -= r.length
                idx += 1
                continue
            k = min(length, r.length - offset)
            if r.kind == "hole" or r.prot == "none":
                return bytes(out)
            if r.kind == "anon":
                out += fill(r.data, k, offset) if r.touched else bytes(k)
            else:
                assert r.file is not None
                if r.file in written:
                    return None
                content = files[r.file]
                fstart = r.offset + offset
                size = len(content)
                readable_end = (size + 4095) // 4096 * 4096  # the last page reads zeros past EOF
                avail = max(0, min(k, readable_end - fstart))
                chunk = bytes(content[fstart : fstart + avail])
                out += chunk + bytes(avail - len(chunk))
                if avail < k:
                    return bytes(out)
            length -= k
            offset = 0
            idx += 1
        if length > 0:
            return bytes(out)
    return bytes(out)


def consistency_violations(scenario: Scenario, result: RunResult) -> list[str]:
    """Check the LTP writev07 property call by call; returns what was violated."""
    if any(f.size > _MAX_JUDGED for f in scenario.files):
        return []
    files = _initial_content(scenario)
    fpos: dict[tuple[str, tuple[str, ...]], int] = {}
    problems: list[str] = []
    for k, (call, res) in enumerate(zip(scenario.calls, result.calls, strict=False)):
        key = (call.file, tuple(sorted(call.flags)))
        if call.op == "lseek":
            if res.ret is not None and res.ret >= 0:
                fpos[key] = res.ret
            continue
        if res.ret is None:
            return problems  # the run ended in this call: nothing more to check
        content = files[call.file]
        pos = call.pos if call.op in ("pwrite", "pwritev") else fpos.get(key, 0)
        if "O_APPEND" in call.flags:
            pos = len(content)
        if res.errno is None and res.ret > 0:
            src = _source_bytes(scenario, call, files)
            if src is None:
                return problems  # source aliases a written file: stop judging here
            n = res.ret
            if pos + n > _MAX_JUDGED:
                return problems  # too large to rebuild in memory: stop judging here
            if n > len(src):
                problems.append(
                    f"call[{k}] returned {n} but only {len(src)} source bytes are readable"
                )
                return problems
            if pos > len(content):
                content.extend(bytes(pos - len(content)))
            end = pos + n
            if end > len(content):
                content.extend(bytes(end - len(content)))
            content[pos:end] = src[:n]
            if call.op == "write" or call.op == "writev":
                fpos[key] = end
        elif res.errno is not None:
            pass  # nothing may change (i_size growth to pos is checked at the end)
        # A zero return changes nothing.
    for name, expected in files.items():
        got = result.files[name]
        want = FileState(len(expected), pages_from_bytes(bytes(expected)))
        if got.size != want.size:
            # Allowed: a failed write beyond EOF left i_size at its position (see module doc).
            grown = [
                c.pos
                for c, r in zip(scenario.calls, result.calls, strict=False)
                if r.errno and c.file == name
            ]
            if not (got.size > want.size and got.size in grown):
                problems.append(f"file {name}: size {got.size}, expected {want.size}")
                continue
            want = FileState(got.size, want.pages)
        diff = got.first_difference(want)
        if diff is not None:
            problems.append(f"file {name}: first differing byte at offset {diff}")
    return problems


def judge(scenario: Scenario, result: RunResult) -> list[str]:
    """Compare a run with the scenario's expectation for its design; the mismatches."""
    expect = scenario.expectation(result.design)
    if expect is None:
        return []
    problems: list[str] = []
    if result.verdict != expect.verdict:
        problems.append(f"verdict {result.verdict}, expected {expect.verdict}")
        return problems
    if expect.ret is not None:
        got = [c.as_expected() for c in result.calls]
        if got != list(expect.ret):
            problems.append(f"ret {got}, expected {list(expect.ret)}")
    for name, size in expect.sizes.items():
        if result.files[name].size != size:
            problems.append(f"file {name} size {result.files[name].size}, expected {size}")
    if expect.consistent and result.verdict == "ok":
        problems.extend(consistency_violations(scenario, result))
    return problems
