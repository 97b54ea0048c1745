# ruff: noqa: E501  (the C source keeps its own line lengths)
"""The microbenchmarks behind this machine's profile (``profiles/amd-epyc-this-machine.toml``).

A C program times kernel paths on the real kernel: syscall entry (getppid), lseek, pwrite of
1 B to 64 KiB from a resident buffer into tmpfs, pwritev of 16 one-byte segments against one of
16 bytes (the per-window cost), and pwrite from untouched anonymous memory, from an untouched
MAP_SHARED tmpfs page and from an evicted ext4 page (each against the same with the page touched
from user space first). Thread CPU time (CLOCK_THREAD_CPUTIME_ID), so that other load on the
machine does not count as kernel time; a warm-up, then rounds that interleave the benchmarks.
Not controlled: frequency (a VM), cache state, SMT neighbours. Files are named ``writepath-*``
and removed. ``run()`` prints one line per benchmark: name, median, min, max ns per iteration.

``run_prefault(xfs_dir)`` times the prefault itself, which this kernel still runs in iomap's
write loop (xfs) but no longer in the generic one (tmpfs): pwritev of 16 one-byte segments
against one of 16 bytes on both. iomap's prefault calls ``fault_in_readable`` once per segment,
so (xfs difference - tmpfs difference) / 15 is one ``fault_in_readable`` of a resident page:
its call, its user-access window and its touch. The per-round difference of differences is
taken so that a drift within the run cancels; median and quartiles over the rounds. It needs a
directory on xfs (e.g. a loop-mounted image named ``writepath-*``), which the caller provides.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

C_SOURCE = r"""
/* writepath cost microbenchmarks: time kernel paths on this machine (ns per iteration). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int fd_shm, fd_map, fd_disk;
static char *buf, *anon, *fmap, *dmap;
static volatile char sink;
#define PG 4096

static void b_getppid(void) { syscall(SYS_getppid); }
static void b_lseek(void) { lseek(fd_shm, 0, SEEK_SET); }
static void b_pw1(void) { pwrite(fd_shm, buf, 1, 0); }
static void b_pw256(void) { pwrite(fd_shm, buf, 256, 0); }
static void b_pw4k(void) { pwrite(fd_shm, buf, 4096, 0); }
static void b_pw64k(void) { pwrite(fd_shm, buf, 65536, 0); }
static void b_pw16(void) { pwrite(fd_shm, buf, 16, 0); }
static void b_pwv16(void) { struct iovec v[16]; for (int k = 0; k < 16; k++) { v[k].iov_base = buf + k; v[k].iov_len = 1; } pwritev(fd_shm, v, 16, 0); }
static void b_pwv1(void) { struct iovec v[1]; v[0].iov_base = buf; v[0].iov_len = 16; pwritev(fd_shm, v, 1, 0); }
static void b_madv(void) { madvise(anon, PG, MADV_DONTNEED); }
static void b_madv_touch(void) { madvise(anon, PG, MADV_DONTNEED); sink = *(volatile char *)anon; }
static void b_madv_pw(void) { madvise(anon, PG, MADV_DONTNEED); pwrite(fd_shm, anon, 4096, 0); }
static void b_madv_touch_pw(void) { madvise(anon, PG, MADV_DONTNEED); sink = *(volatile char *)anon; pwrite(fd_shm, anon, 4096, 0); }
static void b_fmadv(void) { madvise(fmap, PG, MADV_DONTNEED); }
static void b_fmadv_touch(void) { madvise(fmap, PG, MADV_DONTNEED); sink = *(volatile char *)fmap; }
static void b_fmadv_pw(void) { madvise(fmap, PG, MADV_DONTNEED); pwrite(fd_shm, fmap, 4096, 0); }
static void b_fmadv_touch_pw(void) { madvise(fmap, PG, MADV_DONTNEED); sink = *(volatile char *)fmap; pwrite(fd_shm, fmap, 4096, 0); }
static void b_dadv(void) { madvise(dmap, PG, MADV_DONTNEED); posix_fadvise(fd_disk, 0, PG, POSIX_FADV_DONTNEED); }
static void b_dadv_touch(void) { madvise(dmap, PG, MADV_DONTNEED); posix_fadvise(fd_disk, 0, PG, POSIX_FADV_DONTNEED); sink = *(volatile char *)dmap; }
static void b_dadv_pw(void) { madvise(dmap, PG, MADV_DONTNEED); posix_fadvise(fd_disk, 0, PG, POSIX_FADV_DONTNEED); pwrite(fd_shm, dmap, 4096, 0); }

struct bench { const char *name; void (*fn)(void); long iters; };
static struct bench benches[] = {
    {"getppid", b_getppid, 400000}, {"lseek", b_lseek, 400000},
    {"pwrite_1", b_pw1, 200000}, {"pwrite_16", b_pw16, 200000}, {"pwrite_256", b_pw256, 200000},
    {"pwrite_4096", b_pw4k, 200000}, {"pwrite_65536", b_pw64k, 20000},
    {"pwritev_1x16", b_pwv1, 200000}, {"pwritev_16x1", b_pwv16, 200000},
    {"anon_madvise", b_madv, 100000}, {"anon_madvise_touch", b_madv_touch, 100000},
    {"anon_madvise_pwrite", b_madv_pw, 100000}, {"anon_madvise_touch_pwrite", b_madv_touch_pw, 100000},
    {"file_madvise", b_fmadv, 100000}, {"file_madvise_touch", b_fmadv_touch, 100000},
    {"file_madvise_pwrite", b_fmadv_pw, 100000}, {"file_madvise_touch_pwrite", b_fmadv_touch_pw, 100000},
    {"disk_evict", b_dadv, 2000}, {"disk_evict_touch", b_dadv_touch, 2000}, {"disk_evict_pwrite", b_dadv_pw, 2000},
};

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: ubench SHMFILE MAPFILE DISKFILE [reps]\n"); return 2; }
    int reps = argc > 4 ? atoi(argv[4]) : 7;
    fd_shm = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    fd_map = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
    fd_disk = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd_shm < 0 || fd_map < 0 || fd_disk < 0) { perror("open"); return 1; }
    buf = aligned_alloc(PG, 65536); memset(buf, 1, 65536);
    char page[PG]; memset(page, 2, PG);
    if (pwrite(fd_map, page, PG, 0) != PG || pwrite(fd_disk, page, PG, 0) != PG) { perror("pwrite"); return 1; }
    fsync(fd_disk);
    anon = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    fmap = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd_map, 0);
    dmap = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd_disk, 0);
    if (anon == MAP_FAILED || fmap == MAP_FAILED || dmap == MAP_FAILED) { perror("mmap"); return 1; }
    size_t nb = sizeof(benches) / sizeof(benches[0]);
    static double t[32][64];
    for (size_t b = 0; b < nb; b++)
        for (long k = 0; k < benches[b].iters / 10; k++) benches[b].fn();   /* warm-up */
    /* Rounds interleave the benchmarks so that a burst of load from elsewhere hits all alike. */
    for (int r = 0; r < reps; r++)
        for (size_t b = 0; b < nb; b++) {
            long n = benches[b].iters / 10;
            double a = now();
            for (long k = 0; k < n; k++) benches[b].fn();
            t[b][r] = (now() - a) / n;
        }
    for (size_t b = 0; b < nb; b++) {
        qsort(t[b], reps, sizeof(double), cmp);
        printf("%s %.2f %.2f %.2f %d %ld\n", benches[b].name, t[b][reps / 2], t[b][0], t[b][reps - 1], reps, benches[b].iters / 10);
    }
    unlink(argv[1]); unlink(argv[2]); unlink(argv[3]);
    return 0;
}
"""


def _compile_and_run(
    source: str, name: str, args: list[str], extra_fields: bool
) -> dict[str, list[float]]:
    """Build ``source`` with the system C compiler in a scratch folder, run it with ``args``
    and read its lines ``NAME MEDIAN LOW HIGH`` (and more fields after them where
    ``extra_fields``): ``{name: [median, low, high]}`` in ns."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    with tempfile.TemporaryDirectory(prefix="writepath-ubench-") as build:
        src = Path(build) / f"{name}.c"
        exe = Path(build) / name
        src.write_text(source)
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
        out = subprocess.run(
            [str(exe), *args], check=True, capture_output=True, text=True, timeout=600
        ).stdout
    result: dict[str, list[float]] = {}
    for line in out.splitlines():
        fields = line.split()
        if not extra_fields and len(fields) != 4:
            raise ValueError(f"{name}: expected 4 fields, got {line!r}")
        key, median, low, high, *_ = fields
        result[key] = [float(median), float(low), float(high)]
    return result


def run(rounds: int = 21, shm: str = "/dev/shm", disk: str = "/var/tmp") -> dict[str, list[float]]:
    """Compile and run the benchmarks; ``{name: [median_ns, min_ns, max_ns]}``."""
    args = [
        f"{shm}/writepath-ubench-shm",
        f"{shm}/writepath-ubench-map",
        f"{disk}/writepath-ubench-disk",
        str(rounds),
    ]
    return _compile_and_run(C_SOURCE, "ubench", args, extra_fields=True)


PREFAULT_C_SOURCE = r"""
/* Per-segment prefault cost: pwritev 16x1 vs 1x16 on xfs (iomap: prefaults every segment in
 * 6.18) and on tmpfs (generic_perform_write: copies first since v6.14). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static char *buf; static int fds[2];
static void v16(int fd) { struct iovec v[16]; for (int k = 0; k < 16; k++) { v[k].iov_base = buf + k; v[k].iov_len = 1; } pwritev(fd, v, 16, 0); }
static void v1(int fd) { struct iovec v[1]; v[0].iov_base = buf; v[0].iov_len = 16; pwritev(fd, v, 1, 0); }
static void p1(int fd) { pwrite(fd, buf, 1, 0); }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int reps = atoi(argv[3]);
    fds[0] = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    fds[1] = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
    buf = aligned_alloc(4096, 4096); memset(buf, 1, 4096);
    for (int f = 0; f < 2; f++) { char page[4096]; memset(page, 2, 4096); pwrite(fds[f], page, 4096, 0); }
    void (*fn[3])(int) = {v16, v1, p1}; const char *nm[3] = {"pwritev_16x1", "pwritev_1x16", "pwrite_1"};
    static double t[2][3][101];
    long n = 20000;
    for (int f = 0; f < 2; f++) for (int b = 0; b < 3; b++) for (long k = 0; k < n; k++) fn[b](fds[f]);
    for (int r = 0; r < reps; r++) for (int f = 0; f < 2; f++) for (int b = 0; b < 3; b++) {
        double a = now(); for (long k = 0; k < n; k++) fn[b](fds[f]); t[f][b][r] = (now() - a) / n; }
    /* Also the per-round difference of differences, so that drifts cancel within a round. */
    double dd[101];
    for (int r = 0; r < reps; r++) dd[r] = ((t[0][0][r] - t[0][1][r]) - (t[1][0][r] - t[1][1][r])) / 15;
    for (int f = 0; f < 2; f++) for (int b = 0; b < 3; b++) { qsort(t[f][b], reps, sizeof(double), cmp);
        printf("%s_%s %.2f %.2f %.2f\n", f ? "tmpfs" : "xfs", nm[b], t[f][b][reps / 2], t[f][b][0], t[f][b][reps - 1]); }
    qsort(dd, reps, sizeof(double), cmp);
    printf("prefault_per_segment %.2f %.2f %.2f\n", dd[reps / 2], dd[reps / 4], dd[3 * reps / 4]);
    unlink(argv[1]); unlink(argv[2]);
    return 0;
}
"""


def run_prefault(xfs_dir: str, shm: str = "/dev/shm", rounds: int = 41) -> dict[str, list[float]]:
    """Compile and run the prefault benchmark (module docstring); ``{name: [median, low,
    high]}`` in ns, low/high the min/max, or the quartiles for ``prefault_per_segment``."""
    args = [
        f"{xfs_dir}/writepath-ubench-prefault",
        f"{shm}/writepath-ubench-prefault",
        str(min(max(rounds, 3), 101)),
    ]
    return _compile_and_run(PREFAULT_C_SOURCE, "prefault", args, extra_fields=False)


if __name__ == "__main__":
    import sys

    for k, v in run().items():
        print(f"{k} = {v}")
    if len(sys.argv) > 1:  # a directory on xfs: the prefault benchmark too
        for k, v in run_prefault(sys.argv[1]).items():
            print(f"{k} = {v}")
