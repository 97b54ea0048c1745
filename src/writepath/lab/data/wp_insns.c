/*
 * writepath lab: a QEMU TCG plugin that counts guest instructions between two markers.
 *
 * Build: gcc -shared -fPIC -O2 -o wp_insns.so wp_insns.c
 * Use:   qemu-system-x86_64 -accel tcg -icount shift=0 -plugin ./wp_insns.so ...
 *
 * Every translated instruction gets an inline counter increment: one counter for kernel mode
 * (a virtual address in the upper canonical half) and one for user mode. Inline increments cost
 * no helper call and count instructions as executed, even when a block is left early.
 *
 * A rep-prefixed string instruction (the kernel copies 64 bytes or more from user space with
 * rep movsb on CPUs with ERMS, which TCG's "max" CPU has) runs under TCG as one pass per
 * element, each pass counted like an instruction: a 4 KiB copy would weigh about 4096. Hardware counts it once (one
 * instruction retired), so the plugin counts both ways. Such instructions get a callback
 * instead of an inline increment; a pass is the continuation of the previous one when it is at
 * the same address and no other instruction ran in between (TCG re-enters the instruction for
 * its next pass; an interrupt in between makes the resumed pass count as a new instruction,
 * as on hardware).
 *
 * The guest benchmark (bench.c) executes two marker instructions from user mode:
 *   nopl 0x57500001(%rax)   0f 1f 80 01 00 50 57   START
 *   nopl 0x57500002(%rax)   0f 1f 80 02 00 50 57   STOP
 * At START the plugin takes a snapshot of the counters; at STOP it prints the differences:
 *   wp-lab-plugin: stop N kernel_insns=K user_insns=U kernel_passes=KP user_passes=UP
 * with N counting STOP markers from 0; *_insns count a rep instruction once, *_passes count
 * each of its passes (what TCG executes). The guest has one CPU (SMP off), so there is one pair
 * of counters and no race on them.
 *
 * Debian's qemu packages ship plugin support in the emulator but not the plugin header, so the
 * few declarations used are written out here for the plugin API version this emulator offers
 * (QEMU 7.2, API version 1). The plugin refuses to load under another version rather than
 * misread the API.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- the subset of QEMU's plugin API (version 1) that this plugin calls ---- */
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
	union {
		struct {
			int smp_vcpus;
			int max_vcpus;
		} system;
	};
} qemu_info_t;
enum qemu_plugin_cb_flags { WP_CB_NO_REGS = 0 };
enum qemu_plugin_op { WP_INLINE_ADD_U64 = 0 };
typedef void (*wp_tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*wp_insn_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*wp_atexit_cb)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, wp_tb_trans_cb cb);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, wp_insn_cb cb,
					    enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn,
						enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, wp_atexit_cb cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

#define WP_PLUGIN_API_VERSION 1
__attribute__((visibility("default"))) int qemu_plugin_version = WP_PLUGIN_API_VERSION;
/* ---- end of the API subset ---- */

#define KERNEL_HALF 0xffff800000000000ULL

static const unsigned char mark_start[7] = { 0x0f, 0x1f, 0x80, 0x01, 0x00, 0x50, 0x57 };
static const unsigned char mark_stop[7] = { 0x0f, 0x1f, 0x80, 0x02, 0x00, 0x50, 0x57 };

/* Instructions other than rep-prefixed string ones, counted inline. */
static uint64_t kernel_plain, user_plain;
/* Rep-prefixed string instructions: started (counted once), and every pass. */
static uint64_t kernel_rep_starts, user_rep_starts, kernel_rep_passes, user_rep_passes;
/* The last rep pass: where it was, and the plain counts when it ran. */
static uint64_t last_rep_vaddr, plain_at_last_rep;

struct counts {
	uint64_t kernel_insns, user_insns, kernel_passes, user_passes;
};

static struct counts at_start;
static bool started;
static unsigned long stops;

static struct counts now(void)
{
	struct counts c = {
		.kernel_insns = kernel_plain + kernel_rep_starts,
		.user_insns = user_plain + user_rep_starts,
		.kernel_passes = kernel_plain + kernel_rep_passes,
		.user_passes = user_plain + user_rep_passes,
	};
	return c;
}

static void on_rep_pass(unsigned int vcpu_index, void *userdata)
{
	uint64_t vaddr = (uint64_t)(uintptr_t)userdata;
	bool kernel = vaddr >= KERNEL_HALF;
	uint64_t plain = kernel_plain + user_plain;

	(void)vcpu_index;
	if (!(vaddr == last_rep_vaddr && plain == plain_at_last_rep)) {
		if (kernel)
			kernel_rep_starts++;
		else
			user_rep_starts++;
	}
	if (kernel)
		kernel_rep_passes++;
	else
		user_rep_passes++;
	last_rep_vaddr = vaddr;
	plain_at_last_rep = plain;
}

static void on_start(unsigned int vcpu_index, void *userdata)
{
	(void)vcpu_index;
	(void)userdata;
	at_start = now();
	started = true;
}

static void on_stop(unsigned int vcpu_index, void *userdata)
{
	char line[240];
	struct counts c = now();

	(void)vcpu_index;
	(void)userdata;
	if (!started) {
		snprintf(line, sizeof(line), "wp-lab-plugin: stop %lu without start\n", stops++);
	} else {
		snprintf(line, sizeof(line),
			 "wp-lab-plugin: stop %lu kernel_insns=%" PRIu64 " user_insns=%" PRIu64
			 " kernel_passes=%" PRIu64 " user_passes=%" PRIu64 "\n",
			 stops++, c.kernel_insns - at_start.kernel_insns,
			 c.user_insns - at_start.user_insns, c.kernel_passes - at_start.kernel_passes,
			 c.user_passes - at_start.user_passes);
	}
	started = false;
	qemu_plugin_outs(line);
}

/* Whether the instruction is a rep/repne-prefixed string instruction (movs, stos, lods, cmps,
 * scas, ins, outs), reading past legacy prefixes and a REX prefix. */
static bool is_rep_string(struct qemu_plugin_insn *insn)
{
	const unsigned char *b = qemu_plugin_insn_data(insn);
	size_t n = qemu_plugin_insn_size(insn), k = 0;
	bool rep = false;

	for (; k < n; k++) {
		unsigned char p = b[k];

		if (p == 0xf2 || p == 0xf3)
			rep = true;
		else if (!(p == 0x66 || p == 0x67 || p == 0xf0 || p == 0x2e || p == 0x36 ||
			   p == 0x3e || p == 0x26 || p == 0x64 || p == 0x65))
			break;
	}
	if (k < n && (b[k] & 0xf0) == 0x40)
		k++;
	if (!rep || k >= n)
		return false;
	return (b[k] >= 0xa4 && b[k] <= 0xa7) || (b[k] >= 0xaa && b[k] <= 0xaf) ||
	       (b[k] >= 0x6c && b[k] <= 0x6f);
}

static bool is_marker(struct qemu_plugin_insn *insn, const unsigned char *mark)
{
	return qemu_plugin_insn_size(insn) == sizeof(mark_start) &&
	       memcmp(qemu_plugin_insn_data(insn), mark, sizeof(mark_start)) == 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb);

	(void)id;
	for (size_t k = 0; k < n; k++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
		uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
		bool kernel = vaddr >= KERNEL_HALF;

		if (is_rep_string(insn))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_rep_pass, WP_CB_NO_REGS,
							       (void *)(uintptr_t)vaddr);
		else
			qemu_plugin_register_vcpu_insn_exec_inline(
				insn, WP_INLINE_ADD_U64, kernel ? &kernel_plain : &user_plain, 1);
		/* Only user mode may mark: the benchmark is the one who speaks. */
		if (kernel)
			continue;
		if (is_marker(insn, mark_start))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, WP_CB_NO_REGS, NULL);
		else if (is_marker(insn, mark_stop))
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, WP_CB_NO_REGS, NULL);
	}
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
	char line[240];
	struct counts c = now();

	(void)id;
	(void)userdata;
	snprintf(line, sizeof(line),
		 "wp-lab-plugin: exit stops=%lu kernel_insns=%" PRIu64 " user_insns=%" PRIu64
		 " kernel_passes=%" PRIu64 " user_passes=%" PRIu64 "\n",
		 stops, c.kernel_insns, c.user_insns, c.kernel_passes, c.user_passes);
	qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (info->version.cur != WP_PLUGIN_API_VERSION) {
		fprintf(stderr, "wp_insns: written for QEMU plugin API %d, this QEMU offers %d\n",
			WP_PLUGIN_API_VERSION, info->version.cur);
		return -1;
	}
	if (!info->system_emulation || info->system.smp_vcpus != 1) {
		fprintf(stderr, "wp_insns: needs system emulation with one vCPU\n");
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, on_exit, NULL);
	return 0;
}
