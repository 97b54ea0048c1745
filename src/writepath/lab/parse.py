"""Reading a boot's log: the benchmark's result lines paired with the plugin's counts.

Works offline on any saved log (``writepath lab parse LOG``), as kunit_parser does. The log holds
the guest's serial console and the plugin's lines, in the order QEMU wrote them; the k-th
``wp-lab: result`` line of a boot pairs with the plugin's ``stop k`` line. The log comes from a
guest, so it is read as untrusted text: a malformed line is reported, never raised on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from writepath.lab.initramfs import BOOT_LINE, DONE_LINE
from writepath.lab.workloads import MOUNTS, Workload

_RESULT = re.compile(
    r"wp-lab: result workload=(?P<loop>\S+) file=(?P<file>\S+) size=(?P<size>\d+)"
    r" ops=(?P<ops>\d+) round=(?P<round>\d+) wall_ns=(?P<wall>\d+)"
)
_STOP = re.compile(
    r"wp-lab-plugin: stop (?P<n>\d+) kernel_insns=(?P<kernel>\d+) user_insns=(?P<user>\d+)"
    r" kernel_passes=(?P<kernel_passes>\d+) user_passes=(?P<user_passes>\d+)"
)
_ERROR = re.compile(r"wp-lab: error .*")
_BOOT = re.compile(re.escape(BOOT_LINE) + r" release=(?P<release>\S+)")
_PANIC = re.compile(r"Kernel panic.*")


@dataclass(frozen=True)
class Sample:
    """One measured round of one workload in one boot."""

    workload: Workload
    round: int
    ops: int
    #: Guest instructions between the markers, a rep-prefixed string instruction counted once.
    kernel_insns: int
    user_insns: int
    #: The same with each pass of a rep-prefixed instruction counted, as TCG executes them.
    kernel_passes: int
    user_passes: int
    wall_ns: int

    @property
    def kernel_insns_per_op(self) -> float:
        return self.kernel_insns / self.ops

    @property
    def kernel_passes_per_op(self) -> float:
        return self.kernel_passes / self.ops

    @property
    def wall_ns_per_op(self) -> float:
        return self.wall_ns / self.ops


@dataclass
class BootRecord:
    """What one boot's log says."""

    release: str | None = None
    samples: list[Sample] = field(default_factory=list)
    done: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.done and not self.problems and bool(self.samples)


def _fs_of(path: str) -> str | None:
    for fs, where in MOUNTS.items():
        if path.startswith(where + "/"):
            return fs
    return None


def parse_log(text: str) -> BootRecord:
    record = BootRecord()
    results: list[re.Match[str]] = []
    stops: list[re.Match[str]] = []
    for raw in text.splitlines():
        line = raw.strip("\r")
        if m := _BOOT.search(line):
            record.release = m["release"]
        elif m := _RESULT.search(line):
            results.append(m)
        elif m := _STOP.search(line):
            stops.append(m)
        elif (m := _ERROR.search(line)) or (m := _PANIC.search(line)):
            record.problems.append(m.group(0))
        elif DONE_LINE in line:
            record.done = True
    for k, stop in enumerate(stops):
        if int(stop["n"]) != k:
            record.problems.append(f"plugin stop line {k} is numbered {stop['n']}")
            return record
    if len(results) != len(stops):
        record.problems.append(f"{len(results)} result lines but {len(stops)} plugin stop lines")
        return record
    for res, stop in zip(results, stops, strict=True):
        fs = _fs_of(res["file"])
        ops = int(res["ops"])
        if fs is None or ops == 0:
            record.problems.append(f"unreadable result line: {res.group(0)}")
            continue
        record.samples.append(
            Sample(
                workload=Workload(res["loop"], fs, int(res["size"])),
                round=int(res["round"]),
                ops=ops,
                kernel_insns=int(stop["kernel"]),
                user_insns=int(stop["user"]),
                kernel_passes=int(stop["kernel_passes"]),
                user_passes=int(stop["user_passes"]),
                wall_ns=int(res["wall"]),
            )
        )
    return record
