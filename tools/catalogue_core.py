"""The hand-written part of the catalogue: behaviours from facts.md §4 and the seed.

Run ``python -m tools.catalogue_core`` from the repository root to rewrite those files under
scenarios/. Each entry's
expectation cites where it comes from (``source``); none was copied from the model's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.content import add_self_copy_content
from tools.toml_out import write_all

#: The path written into each generated file's first line.
GENERATOR = "tools/catalogue_core.py"
P = 4096
S: list[dict[str, Any]] = []


def f(
    name: str = "target",
    fs: str = "tmpfs",
    size: int = P,
    data: str = "pattern",
    cached: bool = True,
) -> dict[str, Any]:
    return {"name": name, "fs": fs, "size": size, "data": data, "cached": cached}


def anon(
    name: str = "buf",
    pages: int = 1,
    touched: bool = True,
    data: str = "pattern:7",
    prot: str = "rw",
) -> dict[str, Any]:
    r: dict[str, Any] = {
        "name": name,
        "pages": pages,
        "kind": "anon",
        "prot": prot,
        "touched": touched,
    }
    if touched:
        r["data"] = data
    return r


def fmap(
    name: str,
    file: str,
    offset: int = 0,
    pages: int = 1,
    shared: bool = True,
    prot: str = "r",
    touched: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "pages": pages,
        "kind": "file",
        "file": file,
        "offset": offset,
        "shared": shared,
        "prot": prot,
        "touched": touched,
    }


def hole(name: str = "hole", pages: int = 1) -> dict[str, Any]:
    return {"name": name, "pages": pages, "kind": "hole"}


def none(name: str = "bad", pages: int = 1) -> dict[str, Any]:
    return {"name": name, "pages": pages, "kind": "anon", "prot": "none", "touched": False}


def add(**s: Any) -> None:
    S.append(s)


LIVE_DEAD = {"faulting-copy": {"verdict": "deadlock"}, "no-fault-in": {"verdict": "livelock"}}

for fs in ("tmpfs", "ext4", "ramfs", "xfs"):
    suffix = "" if fs == "tmpfs" else f"-{fs}"
    design = LIVE_DEAD if fs != "xfs" else {}
    add(
        name=f"self-mmap-same-page{suffix}",
        description=(
            f"pwrite of a cached {fs} page from an untouched MAP_SHARED mapping of that same page. "
            "With the folio locked, the first copy cannot fault the source in: v6.14 copies "
            "nothing, faults the page in after unlocking and retries; v6.13 faults it in first. "
            "A copy with faults enabled waits for its own folio lock; a loop without the late "
            "fault-in retries forever."
            + (
                " xfs runs iomap's own loop, which prefaults in every design."
                if fs == "xfs"
                else ""
            )
        ),
        source="xfstests generic/248; seed 665575cff098",
        file=[f(fs=fs)],
        region=[fmap("map", "target")],
        call=[{"op": "pwrite", "iov": [["map", 0, P]], "pos": 0}],
        expect={"ret": [P], "consistent": False, "design": design},
    )

add(
    name="self-mmap-same-page-touched",
    description="gVisor: a write of a page onto itself through a resident MAP_SHARED mapping completes and leaves the page as it was.",
    source="gVisor write tests",
    file=[f()],
    region=[fmap("map", "target", touched=True)],
    call=[{"op": "pwrite", "iov": [["map", 0, P]], "pos": 0}],
    expect={"ret": [P], "design": {"faulting-copy": {"ret": [P]}, "no-fault-in": {"ret": [P]}}},
)
add(
    name="self-mmap-private-untouched",
    description="pwrite of a page from an untouched MAP_PRIVATE mapping of that same page: a read fault on a private mapping maps the page-cache folio, so the story is the same as MAP_SHARED.",
    source="xfstests generic/248 (MAP_PRIVATE variant)",
    file=[f()],
    region=[fmap("map", "target", shared=False)],
    call=[{"op": "pwrite", "iov": [["map", 0, P]], "pos": 0}],
    expect={"ret": [P], "design": LIVE_DEAD},
)
add(
    name="pwrite1-resident",
    description="will-it-scale pwrite1, one iteration: 4 KiB from a resident buffer at offset 0 of a tmpfs file. v6.14 opens one user-access window, v6.13 two.",
    source="will-it-scale pwrite1; seed 665575cff098",
    file=[f(data="zero")],
    region=[anon()],
    call=[{"op": "pwrite", "iov": [["buf", 0, P]], "pos": 0}],
    expect={
        "ret": [P],
        "consistent": True,
        "design": {
            "faulting-copy": {"ret": [P]},
            "no-fault-in": {"ret": [P]},
            "any-byte-check": {"ret": [P]},
        },
    },
)
add(
    name="write1-loop",
    description="will-it-scale write1: write 4 KiB three times at the file position, seek back to 0, write again.",
    source="will-it-scale write1",
    file=[f(size=0, data="zero")],
    region=[anon()],
    call=[{"op": "write", "iov": [["buf", 0, P]]}] * 3
    + [{"op": "lseek", "pos": 0}, {"op": "write", "iov": [["buf", 0, P]]}],
    expect={"ret": [P, P, P, 0, P], "sizes": {"target": 3 * P}, "consistent": True},
)
add(
    name="writeseek1",
    description="will-it-scale writeseek1: lseek(fd, 0, SEEK_SET) then write 4 KiB, twice.",
    source="will-it-scale writeseek1",
    file=[f(size=0, data="zero")],
    region=[anon()],
    call=[{"op": "lseek", "pos": 0}, {"op": "write", "iov": [["buf", 0, P]]}] * 2,
    expect={"ret": [0, P, 0, P], "sizes": {"target": P}, "consistent": True},
)
add(
    name="ltp-write03-unmapped",
    description="LTP write03: write from an address with no mapping fails with EFAULT; the file neither changes nor grows.",
    source="LTP write03",
    file=[f()],
    region=[hole()],
    call=[{"op": "write", "iov": [["hole", 0, P]]}],
    expect={
        "ret": ["EFAULT"],
        "sizes": {"target": P},
        "consistent": True,
        "design": {"any-byte-check": {"ret": ["EFAULT"]}},
    },
)
add(
    name="ltp-writev02-bad-iovec",
    description="LTP writev02: writev whose only vector points at unmapped memory fails with EFAULT and leaves the file alone.",
    source="LTP writev02",
    file=[f()],
    region=[hole()],
    call=[{"op": "writev", "iov": [["hole", 0, 64], ["hole", 64, 64]]}],
    expect={"ret": ["EFAULT"], "sizes": {"target": P}, "consistent": True},
)
add(
    name="ltp-writev05-null-base",
    description="LTP writev05: a vector with a NULL base and a non-zero length makes writev fail with EFAULT.",
    source="LTP writev05",
    file=[f()],
    region=[anon()],
    call=[{"op": "writev", "iov": [["null", 0, 64], ["null", 0, 64]]}],
    expect={"ret": ["EFAULT"], "sizes": {"target": P}, "consistent": True},
)
add(
    name="ltp-writev06-edge-of-mapping",
    description="LTP writev06: vectors that end exactly at the last readable byte before a PROT_NONE page. Fault-in must not touch past iov_len, so everything is written.",
    source="LTP writev06",
    file=[f()],
    region=[anon("a"), none("gap"), anon("b", data="pattern:3"), none("gap2")],
    call=[{"op": "writev", "iov": [["a", P - 1, 1], ["b", P - 2, 2]]}],
    expect={"ret": [3], "consistent": True},
)
add(
    name="ltp-writev07-bad-middle",
    description="LTP writev07: a bad vector between good ones. LTP does not fix how much is written, only that return value, content and offset agree.",
    source="LTP writev07",
    file=[f(size=0, data="zero")],
    region=[anon(pages=1), hole()],
    call=[
        {"op": "writev", "iov": [["buf", 0, 1024], ["hole", 0, 1024], ["buf", 1024, 1024]]},
        {"op": "lseek", "pos": 0, "whence": "SEEK_CUR"},
    ],
    expect={"consistent": True},
)
add(
    name="ltp-mmapstress02-protnone-self",
    description="LTP mmapstress02: write from a PROT_NONE mapping of the same file page fails with EFAULT.",
    source="LTP mmapstress02",
    file=[f()],
    region=[fmap("map", "target", prot="none")],
    call=[{"op": "pwrite", "iov": [["map", 0, P]], "pos": 0}],
    expect={"ret": ["EFAULT"], "sizes": {"target": P}},
)
add(
    name="xfstests-246-last-segment-untouched-map",
    description="xfstests generic/246: writev whose last vector is an untouched MAP_SHARED mapping of another file writes everything.",
    source="xfstests generic/246",
    file=[f(size=0, data="zero"), f("other", data="pattern:11", size=P)],
    region=[anon(pages=1), fmap("omap", "other")],
    call=[{"op": "writev", "iov": [["buf", 0, 2048], ["omap", 0, P]]}],
    expect={
        "ret": [2048 + P],
        "consistent": True,
        "design": {"no-fault-in": {"verdict": "livelock"}},
    },
)
add(
    name="xfstests-443-one-byte-iovecs",
    description="xfstests generic/443: writev of 1-byte vectors, each in its own untouched anonymous page, writes them all (zeros).",
    source="xfstests generic/443",
    file=[f()],
    region=[anon(pages=4, touched=False)],
    call=[{"op": "writev", "iov": [["buf", k * P + 7, 1] for k in range(4)]}],
    expect={"ret": [4], "consistent": True, "design": {"no-fault-in": {"verdict": "livelock"}}},
)
add(
    name="xfstests-638-overlapping-self-pwritev",
    description="xfstests generic/638: pwritev whose vectors map the destination range itself through MAP_SHARED; it must complete, not hang. Each source page lies behind the folio being written, so even a faulting copy never waits for its own lock; only the loop without a late fault-in spins.",
    source="xfstests generic/638",
    file=[f(size=4 * P)],
    region=[fmap("map", "target", pages=4)],
    call=[{"op": "pwritev", "iov": [["map", 0, 2 * P], ["map", P, 2 * P]], "pos": P}],
    expect={"ret": [4 * P], "design": {"no-fault-in": {"verdict": "livelock"}}},
)
add(
    name="gvisor-pwritev-protnone-second-page",
    description="gVisor: pwritev of three pages whose third page is PROT_NONE writes exactly the two readable pages and raises no signal.",
    source="gVisor pwritev tests",
    file=[f(size=0, data="zero")],
    region=[anon(pages=2), none()],
    call=[{"op": "pwritev", "iov": [["buf", 0, 3 * P]], "pos": 0}],
    expect={"ret": [2 * P], "consistent": True},
)
add(
    name="gvisor-pwritev-sigbus-region",
    description="gVisor: pwritev from a mapping of another file whose third page lies beyond that file's EOF writes exactly the two pages within EOF; no SIGBUS.",
    source="gVisor pwritev tests",
    file=[f(size=0, data="zero"), f("src", size=2 * P, data="pattern:5")],
    region=[fmap("smap", "src", pages=3, touched=False)],
    call=[{"op": "pwritev", "iov": [["smap", 0, 3 * P]], "pos": 0}],
    expect={"ret": [2 * P], "consistent": True},
)
add(
    name="untouched-anon-source",
    description="A write from valid but untouched anonymous memory (it reads as zeros) is never short.",
    source="facts.md §4 (non-resident sources)",
    file=[f(size=2 * P)],
    region=[anon(pages=2, touched=False)],
    call=[{"op": "pwrite", "iov": [["buf", 0, 2 * P]], "pos": 0}],
    expect={"ret": [2 * P], "consistent": True, "design": {"no-fault-in": {"verdict": "livelock"}}},
)
add(
    name="untouched-hole-mapping-source",
    description="A write from an untouched mapping of a sparse file (a hole, reads as zeros) is never short.",
    source="facts.md §4 (non-resident sources)",
    file=[f(size=2 * P), f("sparse", size=2 * P, data="zero")],
    region=[fmap("smap", "sparse", pages=2)],
    call=[{"op": "pwrite", "iov": [["smap", 0, 2 * P]], "pos": 0}],
    expect={"ret": [2 * P], "consistent": True, "design": {"no-fault-in": {"verdict": "livelock"}}},
)
add(
    name="write-null-zero",
    description="write(fd, NULL, 0) returns 0 and touches nothing.",
    source="facts.md §4",
    file=[f()],
    call=[{"op": "write", "iov": [["null", 0, 0]]}],
    expect={"ret": [0], "sizes": {"target": P}},
)
add(
    name="writev-zero-length-bad-pointers",
    description="Zero-length vectors with NULL and unmapped bases are never dereferenced; the good vector between them is written.",
    source="facts.md §4",
    file=[f(size=0, data="zero")],
    region=[anon(), hole()],
    call=[{"op": "writev", "iov": [["null", 0, 0], ["buf", 0, P], ["hole", 0, 0]]}],
    expect={"ret": [P], "consistent": True},
)
add(
    name="write-kernel-address",
    description="A write from a kernel address fails access_ok() in vfs_write(): EFAULT before anything is touched.",
    source="fs/read_write.c vfs_write()",
    file=[f()],
    call=[{"op": "write", "iov": [["kernel", 0, 64]]}],
    expect={"ret": ["EFAULT"], "sizes": {"target": P}},
)
add(
    name="ext4-efbig-at-max-size",
    description="pwrite at 16 TiB on ext4 with 4 KiB blocks: s_maxbytes is (2^32 - 1) blocks, so generic_write_check_limits() returns EFBIG.",
    source="mm/filemap.c generic_write_check_limits(); fs/ext4/super.c ext4_max_size()",
    file=[f(fs="ext4", size=0, data="zero")],
    region=[anon()],
    call=[{"op": "pwrite", "iov": [["buf", 0, P]], "pos": 1 << 44}],
    expect={"ret": ["EFBIG"], "sizes": {"target": 0}},
)
add(
    name="rlimit-fsize",
    description="RLIMIT_FSIZE of 8 KiB: a write starting at the limit fails with EFBIG (and SIGXFSZ); one that crosses it is cut at the limit.",
    source="mm/filemap.c generic_write_check_limits()",
    rlimit_fsize=2 * P,
    file=[f(size=0, data="zero")],
    region=[anon(pages=2)],
    call=[
        {"op": "pwrite", "iov": [["buf", 0, P]], "pos": 2 * P},
        {"op": "pwrite", "iov": [["buf", 0, 2 * P]], "pos": P},
    ],
    expect={"ret": ["EFBIG", P], "sizes": {"target": 2 * P}},
)
add(
    name="bad-fd",
    description="A write to a descriptor that is not open fails with EBADF; so does a write to a read-only descriptor.",
    source="fs/read_write.c",
    file=[f()],
    region=[anon()],
    call=[
        {"op": "write", "iov": [["buf", 0, 16]], "fd": 99},
        {"op": "write", "iov": [["buf", 0, 16]], "flags": ["O_RDONLY"]},
    ],
    expect={"ret": ["EBADF", "EBADF"], "sizes": {"target": P}},
)
add(
    name="pwrite-negative-pos",
    description="pwrite and pwritev at a negative offset fail with EINVAL.",
    source="fs/read_write.c ksys_pwrite64(), do_pwritev()",
    file=[f()],
    region=[anon()],
    call=[
        {"op": "pwrite", "iov": [["buf", 0, 16]], "pos": -1},
        {"op": "pwritev", "iov": [["buf", 0, 16], ["buf", 16, 16]], "pos": -4096},
    ],
    expect={"ret": ["EINVAL", "EINVAL"]},
)
add(
    name="writev-negative-length",
    description="A vector whose length is negative as ssize_t makes writev fail with EINVAL.",
    source="lib/iov_iter.c copy_iovec_from_user()",
    file=[f()],
    region=[anon()],
    call=[{"op": "writev", "iov": [["buf", 0, 16], ["buf", 0, -1]]}],
    expect={"ret": ["EINVAL"]},
)
add(
    name="o-append",
    description="With O_APPEND, write and even pwrite write at EOF (Linux ignores pwrite's offset), and write leaves the position at the new EOF.",
    source="pwrite(2) BUGS; mm/filemap.c generic_write_checks()",
    file=[f(size=100)],
    region=[anon()],
    call=[
        {"op": "write", "iov": [["buf", 0, 50]], "flags": ["O_APPEND"]},
        {"op": "pwrite", "iov": [["buf", 50, 50]], "pos": 0, "flags": ["O_APPEND"]},
        {"op": "lseek", "pos": 0, "whence": "SEEK_CUR", "flags": ["O_APPEND"]},
    ],
    expect={"ret": [50, 50, 150], "sizes": {"target": 200}, "consistent": True},
)
add(
    name="partly-readable-chunk",
    description=(
        "A 4 KiB write whose source starts mid-page and runs into a PROT_NONE page: only its first "
        "2 KiB are readable. v6.13's prefault returns 2048 not faulted in (< bytes), so the copy "
        "writes 2048 and the next chunk fails; v6.14 copies 2048 first. The 2021 gfs2 check "
        "(any byte not faulted in is a failure) gives up on the first chunk: EFAULT, nothing written."
    ),
    source="facts.md §3 (2021 gfs2 hang); kernel-code.md §4-5",
    file=[f(size=0, data="zero")],
    region=[anon(), none()],
    call=[{"op": "pwrite", "iov": [["buf", 2048, P]], "pos": 0}],
    expect={
        "ret": [2048],
        "consistent": True,
        "design": {"any-byte-check": {"ret": ["EFAULT"], "sizes": {"target": 0}}},
    },
)
add(
    name="efault-beyond-eof-grows-file",
    description=(
        "FINDING: pwrite at 8 KiB into a 4 KiB file from an unmapped buffer. v6.13 fails in the "
        "prefault before write_begin: EFAULT, size 4096. v6.14 calls write_begin, copies nothing, "
        "and shmem_write_end sets i_size = pos + copied = 8192 before the late fault-in returns "
        "EFAULT: the failed write grows the file. Seen on the real 6.18 kernel on tmpfs, ext4 "
        "and ramfs (ext4_da_do_write_end and simple_write_end do the same)."
    ),
    source="seed 665575cff098 vs kernel-code.md §2, §6, §7; real kernel 6.18",
    file=[f()],
    region=[hole()],
    call=[{"op": "pwrite", "iov": [["hole", 0, P]], "pos": 2 * P}],
    expect={
        "ret": ["EFAULT"],
        "sizes": {"target": 2 * P},
        "design": {"v6.13": {"sizes": {"target": P}}},
    },
)
add(
    name="write-at-1tib",
    description="A 4 KiB pwrite at 1 TiB into a sparse tmpfs file: the model's memory grows with the data written, not with the offset.",
    source="design requirement (sparse files)",
    file=[f(size=0, data="zero")],
    region=[anon()],
    call=[{"op": "pwrite", "iov": [["buf", 0, P]], "pos": 1 << 40}],
    expect={"ret": [P], "sizes": {"target": (1 << 40) + P}, "consistent": True},
)
add(
    name="ext4-uncached-partial-overwrite",
    description="ext4, data on disk but not cached: a 100-byte write in the middle of a block. write_begin reads the block first, so the rest of it survives.",
    source="fs/ext4/inode.c ext4_block_write_begin()",
    file=[f(fs="ext4", size=2 * P, cached=False)],
    region=[anon()],
    call=[{"op": "pwrite", "iov": [["buf", 0, 100]], "pos": 1000}],
    expect={"ret": [100], "consistent": True},
)
add(
    name="ext4-short-copy-new-folio",
    description="ext4 extending write from a source whose last half page is PROT_NONE: write_end refuses the short copy into the new, not uptodate folio, the loop retries with bytes = copied, and exactly the readable part is written.",
    source="fs/buffer.c block_write_end(); kernel-code.md §1",
    file=[f(fs="ext4", size=0, data="zero")],
    region=[anon(pages=2), none()],
    call=[{"op": "pwrite", "iov": [["buf", 2048, 2 * P]], "pos": 0}],
    expect={"ret": [2 * P - 2048], "consistent": True},
)
add(
    name="ext4-large-write",
    description="A 64 KiB write from a resident buffer into an empty ext4 file: large folios let one chunk cover it.",
    source="ext4 large folios (v6.16+)",
    file=[f(fs="ext4", size=0, data="zero")],
    region=[anon(pages=16)],
    call=[{"op": "pwrite", "iov": [["buf", 0, 16 * P]], "pos": 0}],
    expect={"ret": [16 * P], "consistent": True},
)
add(
    name="source-beyond-eof-same-file",
    description="Extend a 4 KiB file by 8 KiB from a two-page mapping of that same file, whose second page starts beyond EOF. The first chunk grows the file, so by the time the second chunk is copied its source page lies within EOF and faults in fine. Source and destination are different folios, so even a faulting copy does not wait for its own lock.",
    source="SIGBUS semantics of filemap_fault(); exploration",
    file=[f()],
    region=[fmap("map", "target", pages=2)],
    call=[{"op": "pwrite", "iov": [["map", 0, 2 * P]], "pos": P}],
    expect={
        "ret": [2 * P],
        "sizes": {"target": 3 * P},
        "design": {"no-fault-in": {"verdict": "livelock"}},
    },
)

# Every self-mapped write states the bytes it leaves (tools/content.py).
for scenario_doc in S:
    add_self_copy_content(scenario_doc)


def main() -> None:
    write_all(S, Path(__file__).resolve().parents[1] / "scenarios", GENERATOR)
    print(f"wrote {len(S)} scenarios")


if __name__ == "__main__":
    main()
