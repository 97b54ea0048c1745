/*
 * writepath lab: the benchmark that runs inside the guest (static, no dependencies).
 *
 * Usage: bench WORKLOAD FILE SIZE OPS WARMUP ROUNDS
 *
 * WORKLOAD is one of the will-it-scale loop bodies (process mode, one task, its own file):
 *   pwrite1     pwrite(fd, buf, SIZE, 0)
 *   write1      write(fd, buf, SIZE), back to offset 0 when the file reaches 1 MiB
 *   writeseek1  lseek(fd, 0, SEEK_SET); write(fd, buf, SIZE)
 * or the shape of unixbench's fsbuffer-w (fstime -b 256 -m 500):
 *   fsbuffer-w  write(fd, buf, SIZE), back to offset 0 after 500 KiB
 *
 * WARMUP iterations run first (the page cache folio exists, the buffer is resident), then
 * ROUNDS times: the START marker, OPS iterations, the STOP marker, a result line. Short rounds
 * let the lab keep the ones no timer tick fell in (the fewest kernel instructions). The markers are
 * multi-byte NOPs with a magic displacement: harmless on any CPU, recognised by the lab's TCG
 * plugin (wp_insns.c), which reports the guest instructions executed in kernel mode and user
 * mode between them. One result line per round goes to stdout; the k-th result line of a boot
 * pairs with the plugin's k-th STOP line of the same boot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* nopl 0x57500001(%rax) and nopl 0x57500002(%rax): "WP" in the top half, 1 = start, 2 = stop. */
#define MARK_START() __asm__ volatile(".byte 0x0f,0x1f,0x80,0x01,0x00,0x50,0x57" ::: "memory")
#define MARK_STOP() __asm__ volatile(".byte 0x0f,0x1f,0x80,0x02,0x00,0x50,0x57" ::: "memory")

#define WRITE1_WRAP (1L << 20)
#define FSBUFFER_WRAP (500L * 1024)
#define MAX_SIZE (1L << 20)

static char buf[MAX_SIZE];

static int fail(const char *what, const char *workload)
{
	printf("wp-lab: error workload=%s what=%s errno=%d\n", workload, what, errno);
	return 1;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One iteration of the loop body; returns 0 on success. */
static int step(int kind, int fd, size_t size, off_t *pos, off_t wrap)
{
	ssize_t n;

	switch (kind) {
	case 0:
		n = pwrite(fd, buf, size, 0);
		return n == (ssize_t)size ? 0 : -1;
	case 1:
		if (lseek(fd, 0, SEEK_SET) != 0)
			return -1;
		n = write(fd, buf, size);
		return n == (ssize_t)size ? 0 : -1;
	default:
		n = write(fd, buf, size);
		if (n != (ssize_t)size)
			return -1;
		*pos += n;
		if (*pos >= wrap) {
			if (lseek(fd, 0, SEEK_SET) != 0)
				return -1;
			*pos = 0;
		}
		return 0;
	}
}

int main(int argc, char **argv)
{
	const char *workload, *path;
	long size, ops, warmup, rounds, k, r;
	int kind, fd;
	off_t pos = 0, wrap = 0;
	long long t0, t1;

	if (argc != 7) {
		fprintf(stderr, "usage: bench WORKLOAD FILE SIZE OPS WARMUP ROUNDS\n");
		return 2;
	}
	workload = argv[1];
	path = argv[2];
	size = atol(argv[3]);
	ops = atol(argv[4]);
	warmup = atol(argv[5]);
	rounds = atol(argv[6]);
	if (size <= 0 || size > MAX_SIZE || ops <= 0 || warmup < 0 || rounds <= 0) {
		fprintf(stderr, "bench: bad SIZE, OPS, WARMUP or ROUNDS\n");
		return 2;
	}
	if (!strcmp(workload, "pwrite1"))
		kind = 0;
	else if (!strcmp(workload, "writeseek1"))
		kind = 1;
	else if (!strcmp(workload, "write1"))
		kind = 2, wrap = WRITE1_WRAP;
	else if (!strcmp(workload, "fsbuffer-w"))
		kind = 2, wrap = FSBUFFER_WRAP;
	else {
		fprintf(stderr, "bench: unknown workload %s\n", workload);
		return 2;
	}
	memset(buf, 'x', sizeof(buf));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fail("open", workload);
	for (k = 0; k < warmup; k++)
		if (step(kind, fd, size, &pos, wrap))
			return fail("warmup", workload);
	for (r = 0; r < rounds; r++) {
		t0 = now_ns();
		MARK_START();
		for (k = 0; k < ops; k++)
			if (step(kind, fd, size, &pos, wrap))
				break;
		MARK_STOP();
		t1 = now_ns();
		if (k != ops)
			return fail("write", workload);
		/* The k-th result line of a boot pairs with the plugin's k-th STOP line. */
		printf("wp-lab: result workload=%s file=%s size=%ld ops=%ld round=%ld wall_ns=%lld\n",
		       workload, path, size, ops, r, t1 - t0);
		fflush(stdout);
	}
	close(fd);
	unlink(path);
	return 0;
}
