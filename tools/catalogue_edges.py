"""Edges the rest of the catalogue never reaches: the exact s_maxbytes boundary, the top of the
user address space, zero-length and bad-descriptor corner cases, i_size growth on a failed write
on every filesystem, uncached full-block short copies, a MAP_PRIVATE source overlapping the
destination.

Run ``python -m tools.catalogue_edges`` from the repository root. Each expectation is worked out
from the kernel source named in ``source`` and was confirmed on the real 6.18 kernel
(``writepath oracle``, ``writepath diff``); none was copied from the model's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.catalogue_core import anon, f, fmap, none
from tools.content import add_self_copy_content
from tools.toml_out import write_all

#: The path written into each generated file's first line.
GENERATOR = "tools/catalogue_edges.py"
P = 4096
#: ext4_max_size() for an extent-mapped file with 4 KiB blocks: (2**32 - 1) blocks.
EXT4_MAXBYTES = ((1 << 32) - 1) * P
#: x86_64 TASK_SIZE_MAX with 4-level page tables: one guard page below 2**47.
TASK_SIZE_MAX = (1 << 47) - P
#: generic_perform_write() before 665575cff098 faults the source in before write_begin, and
#: so does the any-byte check: a wholly unreadable source fails before any write_end.
PREFAULT_FIRST = ("v6.13", "any-byte-check")
S: list[dict[str, Any]] = []


def add(**s: Any) -> None:
    S.append(s)


# 1. The exact s_maxbytes boundary of ext4 (generic_write_check_limits()).
for name, pos, ret, size, what in (
    (
        "ext4-maxbytes-end-exact",
        EXT4_MAXBYTES - P,
        P,
        EXT4_MAXBYTES,
        "ends exactly at s_maxbytes: all of it is written",
    ),
    (
        "ext4-maxbytes-one-over",
        EXT4_MAXBYTES - P + 1,
        P - 1,
        EXT4_MAXBYTES,
        "would end one byte past s_maxbytes: the count is cut to s_maxbytes - pos, a short write",
    ),
    (
        "ext4-maxbytes-start-at",
        EXT4_MAXBYTES,
        "EFBIG",
        0,
        "starts at s_maxbytes: EFBIG, nothing written (no SIGXFSZ: that is only for RLIMIT_FSIZE)",
    ),
):
    add(
        name=name,
        description=(
            f"A 4 KiB pwrite at {pos} into an empty ext4 file, where s_maxbytes is "
            f"{EXT4_MAXBYTES} ((2^32 - 1) blocks of 4 KiB): the write {what}."
        ),
        source="mm/filemap.c generic_write_check_limits(); fs/ext4/super.c ext4_max_size()",
        file=[f(fs="ext4", size=0, data="zero")],
        region=[anon()],
        call=[{"op": "pwrite", "iov": [["buf", 0, P]], "pos": pos}],
        expect={"ret": [ret], "sizes": {"target": size}},
    )

# 2. The top of the user address space (x86 __access_ok() on a run-time size).
add(
    name="source-ends-at-task-size-max",
    description=(
        "pwrite of 64 bytes at 8 KiB into a 4 KiB file from the last 64 bytes below TASK_SIZE_MAX "
        "(unmapped). access_ok() accepts a range that ends exactly at TASK_SIZE_MAX, so the call "
        "reaches the write loop and the copy faults: EFAULT. v6.14 gets there through "
        "write_begin/write_end with nothing copied, which moves i_size to the position (8 KiB); "
        "v6.13 fails in the prefault before write_begin and leaves the size alone."
    ),
    source="arch/x86/include/asm/uaccess_64.h __access_ok(); fs/read_write.c vfs_write(); seed 665575cff098",
    file=[f()],
    call=[{"op": "pwrite", "iov": [["null", TASK_SIZE_MAX - 64, 64]], "pos": 2 * P}],
    expect={
        "ret": ["EFAULT"],
        "sizes": {"target": 2 * P},
        "consistent": True,
        "design": {d: {"sizes": {"target": P}} for d in PREFAULT_FIRST},
    },
)
add(
    name="source-crosses-task-size-max",
    description=(
        "pwrite of 65 bytes at 8 KiB into a 4 KiB file from 64 bytes below TASK_SIZE_MAX: the "
        "range crosses it, access_ok() in vfs_write() refuses it, EFAULT before the write loop, "
        "so no design grows the file."
    ),
    source="arch/x86/include/asm/uaccess_64.h __access_ok(); fs/read_write.c vfs_write()",
    file=[f()],
    call=[{"op": "pwrite", "iov": [["null", TASK_SIZE_MAX - 64, 65]], "pos": 2 * P}],
    expect={
        "ret": ["EFAULT"],
        "sizes": {"target": P},
        "consistent": True,
    },
)

# 3. A zero-length write from a kernel address.
add(
    name="zero-length-kernel-address",
    description=(
        "write, pwrite and a one-vector writev of 0 bytes from a kernel address. access_ok() "
        "with a run-time size of 0 still checks the address itself, so vfs_write() (and "
        "import_ubuf() for the single vector) refuse it with EFAULT before the zero-length "
        "short cut; the file is untouched."
    ),
    source="fs/read_write.c vfs_write(); lib/iov_iter.c __import_iovec_ubuf(); x86 __access_ok()",
    file=[f()],
    call=[
        {"op": "write", "iov": [["kernel", 0, 0]]},
        {"op": "pwrite", "iov": [["kernel", 0, 0]], "pos": 0},
        {"op": "writev", "iov": [["kernel", 0, 0]]},
    ],
    expect={"ret": ["EFAULT", "EFAULT", "EFAULT"], "sizes": {"target": P}, "consistent": True},
)

# 4. A bad descriptor together with a negative position.
add(
    name="bad-fd-negative-pos",
    description=(
        "pwrite and pwritev on a descriptor that is not open, at position -1, and pwrite on a "
        "read-only descriptor at -1: ksys_pwrite64() and do_pwritev() test the position before "
        "they look the descriptor up, so EINVAL wins over EBADF."
    ),
    source="fs/read_write.c ksys_pwrite64(), do_pwritev()",
    file=[f()],
    region=[anon()],
    call=[
        {"op": "pwrite", "iov": [["buf", 0, 16]], "pos": -1, "fd": 99},
        {"op": "pwritev", "iov": [["buf", 0, 16]], "pos": -1, "fd": 99},
        {"op": "pwrite", "iov": [["buf", 0, 16]], "pos": -1, "flags": ["O_RDONLY"]},
    ],
    expect={"ret": ["EINVAL", "EINVAL", "EINVAL"], "sizes": {"target": P}, "consistent": True},
)

# 5. i_size growth on a failed write beyond EOF, on every filesystem.
for fs, how in (
    ("ramfs", "simple_write_end() sets i_size = pos + copied"),
    ("ext4", "ext4_da_do_write_end() sets i_size = pos + copied"),
):
    add(
        name=f"efault-beyond-eof-grows-file-{fs}",
        description=(
            f"pwrite at 8 KiB into a 4 KiB {fs} file from an unmapped buffer. v6.14 calls "
            f"write_begin, copies nothing, and {how} = 8192 before the late fault-in returns "
            "EFAULT: the failed write grows the file. v6.13 fails in the prefault, before "
            "write_begin: EFAULT, size 4096."
        ),
        source="seed 665575cff098; kernel-code.md §1, §2, §6; fs/ext4/inode.c",
        file=[f(fs=fs)],
        region=[none("bad")],
        call=[{"op": "pwrite", "iov": [["bad", 0, P]], "pos": 2 * P}],
        expect={
            "ret": ["EFAULT"],
            "sizes": {"target": 2 * P},
            "consistent": True,
            "design": {d: {"sizes": {"target": P}} for d in PREFAULT_FIRST},
        },
    )
add(
    name="efault-beyond-eof-xfs-keeps-size",
    description=(
        "The same failed pwrite at 8 KiB into a 4 KiB xfs file: iomap_write_iter() still faults "
        "the source in before iomap_write_begin() under every design (the copy-first change was "
        "not merged for iomap), so it fails before any write_end and i_size stays 4096."
    ),
    source="fs/iomap/buffered-io.c iomap_write_iter() (v6.18); kernel-code.md §8",
    file=[f(fs="xfs")],
    region=[none("bad")],
    call=[{"op": "pwrite", "iov": [["bad", 0, P]], "pos": 2 * P}],
    expect={"ret": ["EFAULT"], "sizes": {"target": P}, "consistent": True},
)

# 6. An uncached full-block short copy.
for fs, refuse in (
    ("ext4", "block_write_end() refuses"),
    ("xfs", "__iomap_write_end() refuses"),
):
    add(
        name=f"uncached-full-block-short-copy-{fs}",
        description=(
            f"{fs} file of 3 blocks on disk, not cached: pwrite of one whole block at 4096 from a "
            "source whose first 1000 bytes are readable, then PROT_NONE. write_begin does not "
            "read a block the write covers whole; the copy stops at 1000, and "
            f"{refuse} a short copy into a folio that is not uptodate. The retry with "
            "bytes = 1000 covers the block in part, so write_begin reads it from disk first: "
            "exactly 1000 bytes land and the rest of the block keeps its data."
        ),
        source="fs/buffer.c block_write_end(); fs/iomap/buffered-io.c __iomap_write_end(); kernel-code.md §1, §8",
        file=[f(fs=fs, size=3 * P, cached=False)],
        region=[anon(), none()],
        call=[{"op": "pwrite", "iov": [["buf", P - 1000, P]], "pos": P}],
        expect={"ret": [1000], "sizes": {"target": 3 * P}, "consistent": True},
    )

# 7. A MAP_PRIVATE source overlapping the destination.
add(
    name="self-mmap-private-overlap-forward-1",
    description=(
        "pwrite of 4095 bytes at 1 from a resident MAP_PRIVATE mapping of the same page at 0. "
        "A read fault on a private mapping maps the page-cache folio itself (no copy until "
        "the mapping is written), so the source changes as it is written: the copy runs front "
        "to back and every byte of the page becomes byte 0 (0x01); the second page is untouched."
    ),
    source="mm/memory.c do_read_fault(); arch/x86 copy_user (rep movsb, forward)",
    file=[f(size=2 * P)],
    region=[fmap("map", "target", shared=False, touched=True)],
    call=[{"op": "pwrite", "iov": [["map", 0, P - 1]], "pos": 1}],
    expect={"ret": [P - 1], "sizes": {"target": 2 * P}},
)

# Every self-mapped write states the bytes it leaves (tools/content.py).
for scenario_doc in S:
    add_self_copy_content(scenario_doc)


def main() -> None:
    write_all(S, Path(__file__).resolve().parents[1] / "scenarios", GENERATOR)
    print(f"wrote {len(S)} scenarios")


if __name__ == "__main__":
    main()
