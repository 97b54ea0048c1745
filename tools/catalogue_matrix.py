"""The systematic part of the catalogue: short writes at every kind of boundary, sources that
map the destination at, before, after and across the written range, sources beyond EOF,
extending writes, O_APPEND, evicted and sparse destinations, zero-length and bad vectors.

Expected return values are worked out here from the semantics every design shares (a copy stops
exactly at the first unreadable byte; the loop writes exactly the readable prefix), not taken
from the model. Where that is not certain, the scenario asks only for LTP writev07 consistency,
and the real kernel (``writepath diff``) is the judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.catalogue_core import anon, f, fmap, hole, none
from tools.content import add_self_copy_content
from tools.toml_out import write_all

#: The path written into each generated file's first line.
GENERATOR = "tools/catalogue_matrix.py"
P = 4096
S: list[dict[str, Any]] = []
LIVE = {"no-fault-in": {"verdict": "livelock"}}

# A. Short writes: the source runs from a readable region into an unreadable one.
for bad_kind in ("protnone", "hole"):
    bad = none("bad") if bad_kind == "protnone" else hole("bad")
    for src_off in (0, 100, P - 1):
        for pos in (0, 1000):
            for fs in ("tmpfs", "ext4"):
                readable = 2 * P - src_off
                S.append(
                    {
                        "name": f"short-{bad_kind}-src{src_off}-pos{pos}-{fs}",
                        "description": f"pwrite of 3 pages from source offset {src_off} of a 2-page buffer followed by {bad_kind} memory, at file offset {pos} of an empty {fs} file: exactly the {readable} readable bytes are written.",
                        "source": "gVisor pwritev tests (readable prefix); facts.md §4",
                        "file": [f(fs=fs, size=0, data="zero")],
                        "region": [anon(pages=2), bad],
                        "call": [{"op": "pwrite", "iov": [["buf", src_off, 3 * P]], "pos": pos}],
                        "expect": {"ret": [readable], "consistent": True},
                    }
                )

# A2. Segment boundaries: the bad part is a whole segment, or the tail of one.
for name, iov, ret in (
    ("seg-second-bad", [["buf", 0, 1000], ["bad", 0, 1000]], 1000),
    ("seg-second-partly-bad", [["buf", 0, 1000], ["buf", P - 500, 1000]], 1500),
    ("seg-first-bad", [["bad", 0, 1000], ["buf", 0, 1000]], "EFAULT"),
    ("seg-many-small-then-bad", [["buf", k * 10, 10] for k in range(8)] + [["bad", 0, 10]], 80),
):
    S.append(
        {
            "name": f"writev-{name}",
            "description": f"writev whose vectors meet an unreadable one ({name}): the readable prefix up to the first bad byte is written, or EFAULT if there is none.",
            "source": "LTP writev07; facts.md §4",
            "file": [f(size=0, data="zero")],
            "region": [anon(pages=1), none("bad")],
            "call": [{"op": "writev", "iov": iov}],
            "expect": {"ret": [ret], "consistent": True},
        }
    )

# B. Sources that map the destination file itself.
for name, src_off, pos, length, touched in (
    ("at", 0, 0, 2 * P, False),
    ("at-touched", 0, 0, 2 * P, True),
    ("before", 0, 2 * P, P, False),
    ("after", 2 * P, 0, P, False),
    ("across", 0, P, 2 * P, False),
    ("across-unaligned", 100, P + 7, 2 * P, False),
    ("overlap-forward-1", 0, 1, P, True),
    ("overlap-backward-1", 1, 0, P, True),
):
    S.append(
        {
            "name": f"self-map-{name}",
            "description": f"pwrite of {length} bytes at {pos} from a MAP_SHARED mapping of the same file at offset {src_off} ({'touched' if touched else 'untouched'}): the source {name.replace('-', ' ')} the written range. It completes; where source and destination overlap, bytes are copied front to back.",
            "source": "xfstests generic/248, generic/638; exploration",
            "file": [f(size=4 * P)],
            "region": [fmap("map", "target", pages=4, touched=touched)],
            "call": [{"op": "pwrite", "iov": [["map", src_off, length]], "pos": pos}],
            "expect": {"ret": [length], "design": {} if touched else LIVE},
        }
    )

# C. Sources beyond EOF.
S.append(
    {
        "name": "src-beyond-eof-other-unaligned",
        "description": "pwrite of 2 pages from offset 2048 of a 3-page mapping of a 1-page file: the 2048 bytes before that file's EOF page ends are written; the next page would raise SIGBUS.",
        "source": "gVisor pwritev tests (SIGBUS region)",
        "file": [f(size=0, data="zero"), f("src", size=P, data="pattern:9")],
        "region": [fmap("smap", "src", pages=3)],
        "call": [{"op": "pwrite", "iov": [["smap", 2048, 2 * P]], "pos": 0}],
        "expect": {"ret": [2048], "consistent": True, "design": LIVE},
    }
)
S.append(
    {
        "name": "src-partial-eof-page-other",
        "description": "The source file is 100 bytes long: its one page reads the 100 bytes then zeros up to the page end, so a 4096-byte write from it writes all 4096.",
        "source": "mmap(2): the remainder of the last page reads as zeros",
        "file": [f(size=0, data="zero"), f("src", size=100, data="pattern:4")],
        "region": [fmap("smap", "src", pages=2)],
        "call": [{"op": "pwrite", "iov": [["smap", 0, 2 * P]], "pos": 0}],
        "expect": {"ret": [P], "consistent": True, "design": LIVE},
    }
)
S.append(
    {
        "name": "src-beyond-eof-same-file-not-extending",
        "description": "pwrite of 2 pages at 0 from a 2-page mapping of the same 1-page file: the first page is written from itself; the second source page lies beyond EOF when it is copied (the write has not grown the file yet), so the call returns 4096.",
        "source": "filemap_fault() SIGBUS beyond EOF; exploration",
        "file": [f(size=P)],
        "region": [fmap("map", "target", pages=2)],
        "call": [{"op": "pwrite", "iov": [["map", 0, 2 * P]], "pos": 0}],
        "expect": {"ret": [P], "sizes": {"target": P}, "design": LIVE},
    }
)

# D. Extending writes and holes in between.
for pos in (P, 10000, 3 * P + 1):
    S.append(
        {
            "name": f"extend-at-{pos}",
            "description": f"pwrite of 3000 bytes at {pos} into a 4096-byte file: the file grows to {pos + 3000}; the gap reads as zeros.",
            "source": "pwrite(2)",
            "file": [f(size=P)],
            "region": [anon()],
            "call": [{"op": "pwrite", "iov": [["buf", 0, 3000]], "pos": pos}],
            "expect": {"ret": [3000], "sizes": {"target": pos + 3000}, "consistent": True},
        }
    )
for fs in ("tmpfs", "ext4"):
    S.append(
        {
            "name": f"extend-short-beyond-eof-{fs}",
            "description": f"An extending pwrite beyond EOF on {fs} whose source turns unreadable after 1000 bytes: 1000 bytes land at the position; the file grows to pos + 1000.",
            "source": "facts.md §4; exploration",
            "file": [f(fs=fs, size=P)],
            "region": [anon(), none()],
            "call": [{"op": "pwrite", "iov": [["buf", P - 1000, 2 * P]], "pos": 3 * P}],
            "expect": {"ret": [1000], "sizes": {"target": 3 * P + 1000}, "consistent": True},
        }
    )

# E. O_APPEND.
S.append(
    {
        "name": "o-append-writev-short",
        "description": "writev with O_APPEND whose second vector is unreadable: the first vector is appended at EOF and the position follows it.",
        "source": "LTP writev07 with O_APPEND",
        "file": [f(size=1000)],
        "region": [anon(), hole()],
        "call": [
            {"op": "writev", "iov": [["buf", 0, 500], ["hole", 0, 500]], "flags": ["O_APPEND"]},
            {"op": "lseek", "pos": 0, "whence": "SEEK_CUR", "flags": ["O_APPEND"]},
        ],
        "expect": {"ret": [500, 1500], "sizes": {"target": 1500}, "consistent": True},
    }
)
S.append(
    {
        "name": "o-append-efault",
        "description": "write with O_APPEND from unmapped memory: EFAULT, the file and its position unchanged.",
        "source": "LTP write03 with O_APPEND",
        "file": [f(size=1000)],
        "region": [hole()],
        "call": [
            {"op": "write", "iov": [["hole", 0, 500]], "flags": ["O_APPEND"]},
            {"op": "lseek", "pos": 0, "whence": "SEEK_CUR", "flags": ["O_APPEND"]},
        ],
        "expect": {"ret": ["EFAULT", 0], "sizes": {"target": 1000}, "consistent": True},
    }
)
S.append(
    {
        "name": "o-append-sparse",
        "description": "O_APPEND onto a sparse 3-page file appends after the hole.",
        "source": "open(2) O_APPEND",
        "file": [f(size=3 * P, data="zero")],
        "region": [anon()],
        "call": [{"op": "write", "iov": [["buf", 0, 100]], "flags": ["O_APPEND"]}],
        "expect": {"ret": [100], "sizes": {"target": 3 * P + 100}, "consistent": True},
    }
)

# F. Evicted destinations (ext4, xfs): partial overwrites must read the block first.
for fs in ("ext4", "xfs"):
    for pos, length in ((1, 10), (P - 10, 20), (100, 2 * P), (0, 3 * P)):
        S.append(
            {
                "name": f"evicted-{fs}-pos{pos}-len{length}",
                "description": f"{fs} file of 3 pages on disk, not in the page cache: pwrite of {length} bytes at {pos}. Blocks the write covers in part are read before the copy, so the bytes around the write survive.",
                "source": "ext4_block_write_begin(); __iomap_write_begin()",
                "file": [f(fs=fs, size=3 * P, cached=False)],
                "region": [anon(pages=3)],
                "call": [{"op": "pwrite", "iov": [["buf", 0, length]], "pos": pos}],
                "expect": {"ret": [length], "consistent": True},
            }
        )
    S.append(
        {
            "name": f"evicted-{fs}-short-copy",
            "description": f"{fs}, evicted destination, source unreadable after 1000 bytes, write at 100: the short copy into a folio that is not uptodate is refused and retried with the copied length; exactly 1000 bytes land.",
            "source": "block_write_end(); __iomap_write_end()",
            "file": [f(fs=fs, size=2 * P, cached=False)],
            "region": [anon(), none()],
            "call": [{"op": "pwrite", "iov": [["buf", P - 1000, P]], "pos": 100}],
            "expect": {"ret": [1000], "consistent": True},
        }
    )

# G. Sparse destinations.
for fs in ("tmpfs", "ext4", "xfs"):
    S.append(
        {
            "name": f"sparse-middle-{fs}",
            "description": f"pwrite of 100 bytes into the middle of a sparse 3-page {fs} file: the rest still reads as zeros.",
            "source": "sparse files",
            "file": [f(fs=fs, size=3 * P, data="zero")],
            "region": [anon()],
            "call": [{"op": "pwrite", "iov": [["buf", 0, 100]], "pos": P + 50}],
            "expect": {"ret": [100], "sizes": {"target": 3 * P}, "consistent": True},
        }
    )

# H. Zero-length and bad vectors.
S.extend(
    [
        {
            "name": "writev-all-zero-length",
            "description": "writev whose vectors are all zero-length (NULL and unmapped bases): returns 0 without touching them.",
            "source": "facts.md §4",
            "file": [f()],
            "region": [hole()],
            "call": [{"op": "writev", "iov": [["null", 0, 0], ["hole", 0, 0]]}],
            "expect": {"ret": [0], "sizes": {"target": P}},
        },
        {
            "name": "pwrite-zero-length-unmapped",
            "description": "pwrite of 0 bytes from an unmapped address returns 0.",
            "source": "facts.md §4",
            "file": [f()],
            "region": [hole()],
            "call": [{"op": "pwrite", "iov": [["hole", 0, 0]], "pos": 0}],
            "expect": {"ret": [0]},
        },
        {
            "name": "writev-too-many-vectors",
            "description": "writev with UIO_MAXIOV + 1 vectors fails with EINVAL; with exactly UIO_MAXIOV it writes them all.",
            "source": "lib/iov_iter.c iovec_from_user()",
            "file": [f(size=0, data="zero")],
            "region": [anon()],
            "call": [
                {"op": "writev", "iov": [["buf", 0, 1]] * 1025},
                {"op": "writev", "iov": [["buf", 0, 1]] * 1024},
            ],
            "expect": {"ret": ["EINVAL", 1024], "sizes": {"target": 1024}},
        },
        {
            "name": "writev-kernel-address-zero-length",
            "description": "A zero-length vector whose base is a kernel address, between good vectors: access_ok() on a run-time length checks the base itself, so import_iovec() refuses the call with EFAULT.",
            "source": "lib/iov_iter.c __import_iovec(); x86 __access_ok()",
            "file": [f(size=0, data="zero")],
            "region": [anon()],
            "call": [{"op": "writev", "iov": [["buf", 0, 10], ["kernel", 0, 0], ["buf", 10, 10]]}],
            "expect": {"consistent": True},
        },
        {
            "name": "writev-null-base-zero-length-single",
            "description": "writev with one vector, NULL base and zero length: imported as ITER_UBUF, returns 0.",
            "source": "lib/iov_iter.c __import_iovec_ubuf()",
            "file": [f()],
            "call": [{"op": "writev", "iov": [["null", 0, 0]]}],
            "expect": {"ret": [0]},
        },
        {
            "name": "write-huge-length-short",
            "description": "write with a length of 2 GiB from a one-page buffer followed by a hole: the count is clamped to MAX_RW_COUNT, the copy stops at the hole, 4096 bytes are written.",
            "source": "fs/read_write.c vfs_write() MAX_RW_COUNT",
            "file": [f(size=0, data="zero")],
            "region": [anon(), hole()],
            "call": [{"op": "write", "iov": [["buf", 0, 1 << 31]]}],
            "expect": {"ret": [P], "consistent": True},
        },
    ]
)

# Every self-mapped write states the bytes it leaves (tools/content.py).
for scenario_doc in S:
    add_self_copy_content(scenario_doc)


def main() -> None:
    write_all(S, Path(__file__).resolve().parents[1] / "scenarios", GENERATOR)
    print(f"wrote {len(S)} scenarios")


if __name__ == "__main__":
    main()
