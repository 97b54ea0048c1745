"""The benchmark's workloads: a loop body of ``bench.c`` on one filesystem, with its sizes."""

from __future__ import annotations

from dataclasses import dataclass

#: Where the guest's init mounts each filesystem. ramfs uses simple_write_begin/end (libfs), the
#: "ramfs-style" path of the unixbench profile; tmpfs uses shmem_write_begin/end (pwrite1's).
MOUNTS = {"tmpfs": "/mnt/tmpfs", "ramfs": "/mnt/ramfs"}


@dataclass(frozen=True)
class Workload:
    loop: str  # a loop body bench.c knows: pwrite1, write1, writeseek1, fsbuffer-w
    fs: str  # a key of MOUNTS
    size: int  # bytes per write

    @property
    def name(self) -> str:
        """``loop.fs`` (with the size when it is not the loop's usual one)."""
        usual = 256 if self.loop == "fsbuffer-w" else 4096
        sized = "" if self.size == usual else f"-{self.size}B"
        return f"{self.loop}{sized}.{self.fs}"

    @property
    def cycle(self) -> int:
        """Operations after which the loop's file offset comes back to where it was.

        write1 wraps at 1 MiB, fsbuffer-w at 500 KiB; pwrite1 and writeseek1 always write at
        offset 0. A round of a whole number of cycles has the same shape as every other round
        (the same number of seeks), and a warm-up of one cycle leaves every folio allocated.
        """
        wrap = {"write1": 1 << 20, "fsbuffer-w": 500 * 1024}.get(self.loop)
        return 1 if wrap is None else -(-wrap // self.size)

    def round_ops(self, ops: int) -> int:
        """``ops`` rounded up to a whole number of cycles."""
        return -(-ops // self.cycle) * self.cycle

    def warmup_ops(self, warmup: int) -> int:
        return max(warmup, self.cycle)

    @property
    def path(self) -> str:
        return f"{MOUNTS[self.fs]}/writepath-{self.loop}"


LOOPS = ("pwrite1", "write1", "writeseek1", "fsbuffer-w")

#: will-it-scale writes 4 KiB; unixbench's fsbuffer-w writes 256-byte buffers. A 1-byte pwrite
#: shows the change where the copy does not dominate (the feasibility run's -5.6% case).
DEFAULT_WORKLOADS: tuple[Workload, ...] = (
    *(
        Workload(loop, fs, 256 if loop == "fsbuffer-w" else 4096)
        for loop in LOOPS
        for fs in ("tmpfs", "ramfs")
    ),
    Workload("pwrite1", "tmpfs", 1),
)


def select(names: list[str] | None) -> tuple[Workload, ...]:
    """The default workloads whose name or loop is in ``names`` (all of them for None)."""
    if not names:
        return DEFAULT_WORKLOADS
    chosen = tuple(w for w in DEFAULT_WORKLOADS if w.name in names or w.loop in names)
    unknown = [n for n in names if not any(n in (w.name, w.loop) for w in DEFAULT_WORKLOADS)]
    if unknown:
        known = ", ".join(w.name for w in DEFAULT_WORKLOADS)
        raise ValueError(f"unknown workload {', '.join(unknown)} (known: {known})")
    return chosen
