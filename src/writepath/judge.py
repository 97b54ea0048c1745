"""Judge a run against its scenario: the stated ``[expect]``, and the consistency property.

The consistency property is LTP writev07's, stated without the model: after each call that
returns n >= 0, the file holds the first n source bytes at the write position and nothing else
changed; after a call that fails, no byte changed. Expected bytes come from the scenario (the
data specs), never from the model's own state.

One change the kernel makes on a failed write is expected, exactly where the kernel makes it:
a loop that copies before it faults the source in (generic_perform_write() since 665575cff098,
v6.14) calls write_begin and write_end at the write position even when the copy brings nothing;
write_end then moves i_size up to ``pos + 0`` (shmem_write_end, simple_write_end,
ext4_da_do_write_end all do), so a write at a position beyond EOF that fails with EFAULT leaves
the file grown to that position, with zeros. It does not happen

- where the loop faults the source in before write_begin and fails there (v6.13, and the
  any-byte check, which fails on even fewer bytes);
- on xfs, whose iomap_write_iter() (fs/iomap/buffered-io.c, up to v6.18) still prefaults
  under every design; only the copy-first change applied to iomap (design ``proposed``) would
  reach iomap_write_end() with nothing copied, and iomap_write_iter() then also moves i_size to
  ``pos + written`` = ``pos`` when that lies beyond the old size;
- for a call refused before the loop: EBADF, EINVAL, EFBIG, or EFAULT from access_ok() (a
  kernel address, or a range that crosses TASK_SIZE_MAX; a range ending exactly there passes).
"""

from __future__ import annotations

from collections.abc import Mapping

from writepath.kernel.constants import PAGE_SIZE, TASK_SIZE_MAX
from writepath.results import FileState, RunResult, pages_from_bytes
from writepath.scenario import CallSpec, Scenario, fill

#: Cap on how much content the property reconstructs (it holds the files in memory), and on
#: how many bytes one stated ``content`` range may cover.
_MAX_JUDGED = 64 << 20
#: Content ranges are compared in pieces of this size, so that no range is built whole.
_COMPARE_PIECE = 1 << 20

#: Designs whose generic_perform_write() faults the source in before write_begin.
_PREFAULT_FIRST = frozenset({"v6.13", "any-byte-check"})
#: Designs under which iomap_write_iter() copies first (the change applied to iomap too).
_IOMAP_COPY_FIRST = frozenset({"proposed"})
#: Verdicts of a run whose calls all returned (the files hold their final state).
_FINISHED = ("ok", "stale-data")


def _initial_content(scenario: Scenario) -> dict[str, bytearray]:
    return {f.name: bytearray(fill(f.data, f.size)) for f in scenario.files}


def _source_bytes(
    scenario: Scenario, call: CallSpec, files: dict[str, bytearray], limit: int
) -> bytes | None:
    """The first ``limit`` bytes the call's source reads as, fewer if it stops being readable
    sooner; None if it aliases a file that is written in this scenario (then the bytes may
    change during the copy). Never builds more than ``limit`` bytes."""
    written = {c.file for c in scenario.calls if c.op != "lseek"}
    regions = list(scenario.regions)
    out = bytearray()
    for v in call.iov:
        if v.length <= 0:
            continue
        if v.region in ("null", "kernel"):
            break
        idx = next(k for k, r in enumerate(regions) if r.name == v.region)
        offset, length = v.offset, v.length
        # The range may run on into the regions after this one.
        while length > 0 and idx < len(regions):
            if len(out) >= limit:
                return bytes(out)
            r = regions[idx]
            if offset >= r.length:
                offset -= r.length
                idx += 1
                continue
            k = min(length, r.length - offset, limit - len(out))
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
                # The page holding EOF reads zeros past EOF; the pages after it raise SIGBUS.
                readable_end = -(-len(content) // PAGE_SIZE) * PAGE_SIZE
                avail = max(0, min(k, readable_end - fstart))
                chunk = bytes(content[fstart : fstart + avail])
                out += chunk + bytes(avail - len(chunk))
                if avail < k:
                    return bytes(out)
            length -= k
            offset += k
            if offset >= r.length:
                offset = 0
                idx += 1
        if length > 0:
            return bytes(out)
    return bytes(out[:limit])


def _passes_access_ok(call: CallSpec) -> bool:
    """Whether the source passes the access_ok() of vfs_write() or import_iovec(): only the
    special regions can fail it (named regions lie in user space). A writev checks every
    vector, zero-length ones included; a range may end exactly at TASK_SIZE_MAX."""
    for v in call.iov:
        if v.region == "kernel":
            return False
        if v.region == "null" and not 0 <= v.offset <= v.offset + v.length <= TASK_SIZE_MAX:
            return False
    return True


def grows_on_failed_write(scenario: Scenario, design: str, call: CallSpec) -> bool:
    """Whether a call that fails with EFAULT reached write_begin at its position with an
    empty copy (see the module docstring): then i_size moves up to that position."""
    if scenario.file(call.file).fs == "xfs":  # iomap_write_iter(), not generic_perform_write()
        copies_first = design in _IOMAP_COPY_FIRST
    else:
        copies_first = design not in _PREFAULT_FIRST
    return copies_first and _passes_access_ok(call)


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
            n = res.ret
            if pos + n > _MAX_JUDGED:
                return problems  # too large to rebuild in memory: stop judging here
            src = _source_bytes(scenario, call, files, n)
            if src is None:
                return problems  # source aliases a written file: stop judging here
            if n > len(src):
                problems.append(
                    f"call[{k}] returned {n} but only {len(src)} source bytes are readable"
                )
                return problems
            end = pos + n
            if end > len(content):
                content.extend(bytes(end - len(content)))
            content[pos:end] = src
            if call.op in ("write", "writev"):
                fpos[key] = end
        elif (
            res.errno == "EFAULT"
            and pos > len(content)
            and grows_on_failed_write(scenario, result.design, call)
        ):
            if pos > _MAX_JUDGED:
                return problems
            content.extend(bytes(pos - len(content)))
        # Any other failure, and a zero return, change nothing.
    for name, expected in files.items():
        got = result.files[name]
        if got.size != len(expected):
            problems.append(f"file {name}: size {got.size}, expected {len(expected)}")
            continue
        # Content only: which bytes are stale is judged by [expect] stale and the verdict.
        want = FileState(len(expected), pages_from_bytes(bytes(expected)), got.stale)
        diff = got.first_difference(want)
        if diff is not None:
            problems.append(f"file {name}: first differing byte at offset {diff}")
    return problems


def content_violations(
    result: RunResult, content: Mapping[str, tuple[tuple[int, int, str], ...]]
) -> list[str]:
    """``[expect] content``: bytes [offset, offset+length) of a file equal fill(SPEC, length).
    Compared piece by piece (a stated range is never built whole); ranges above _MAX_JUDGED
    are refused rather than judged."""
    problems: list[str] = []
    for name, ranges in content.items():
        got = result.files[name]
        if getattr(got, "pages", {}) is None:
            problems.append(f"file {name}: its content was not kept, so it cannot be compared")
            continue
        for offset, length, spec in ranges:
            where = f"file {name} [{offset}, {offset + length})"
            if length > _MAX_JUDGED:
                problems.append(f"{where}: longer than {_MAX_JUDGED >> 20} MiB, not judged")
                continue
            if offset + length > got.size:
                problems.append(f"{where}: beyond its size {got.size}")
                continue
            for start in range(0, length, _COMPARE_PIECE):
                k = min(_COMPARE_PIECE, length - start)
                have = got.read(offset + start, k)
                want = fill(spec, k, start)
                if have != want:
                    j = next(j for j in range(k) if have[j] != want[j])
                    problems.append(
                        f"{where}: byte {offset + start + j} is {have[j]:#04x}, "
                        f"{spec} gives {want[j]:#04x}"
                    )
                    break
    return problems


def stale_violations(
    result: RunResult, stale: Mapping[str, tuple[tuple[int, int], ...]]
) -> list[str]:
    """``[expect] stale``: exactly these [start, end) ranges of a file hold uninitialized
    memory (FileState.stale; a result type without it has none)."""
    problems: list[str] = []
    for name, ranges in stale.items():
        got = [(int(s), int(e)) for s, e in getattr(result.files[name], "stale", ())]
        want = [(int(s), int(e)) for s, e in ranges]
        if got != want:
            problems.append(f"file {name}: stale ranges {got}, expected {want}")
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
    problems.extend(content_violations(result, expect.content))
    if expect.stale is not None:
        problems.extend(stale_violations(result, expect.stale))
    if expect.consistent and result.verdict in _FINISHED:
        problems.extend(consistency_violations(scenario, result))
    return problems
