// SPDX-License-Identifier: GPL-2.0
/*
 * insncount: a QEMU TCG plugin that counts the guest instructions executed
 * between two marker instructions, for mnmon's cost benchmark.
 *
 *   qemu-system-x86_64 ... -plugin build/bench/plugin/libinsncount.so,out=FILE
 *
 * The markers are NOPs no compiler emits: nopl 0x4d4e0001(%rax) (start) and
 * nopl 0x4d4e0002(%rax) (stop), encoded 0f 1f 80 <disp32>. A program (bench/churn.c)
 * runs them around its loop; at each stop the plugin appends one line to FILE:
 *
 *   insns=N
 *
 * With profile=PFILE, it also appends, at each stop, where those instructions ran:
 * one line "<pc hex> <instructions>" per translated block that executed inside the
 * window (a block's first guest address), then "end". bench/profile.py names them
 * from the guest's kallsyms.
 *
 * N counts every instruction the vCPUs executed from start to stop: the program's,
 * the kernel's on its behalf, and whatever else ran meanwhile (interrupts, other
 * tasks), which is why callers run long loops and compare medians. Counting is per
 * translated block, added as the block starts: an exact count of executed
 * instructions, independent of host speed, except that a block left early by an
 * exception (a page fault) counts whole, the same way every time.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARKER_LEN 7
static const uint8_t MARKER[] = { 0x0f, 0x1f, 0x80 };     /* nopl disp32(%rax) */
#define MARK_START 0x4d4e0001u
#define MARK_STOP  0x4d4e0002u

static uint64_t executed;   /* every vCPU adds here: run the guest with one vCPU */
static uint64_t started;
static int counting;
static FILE *out;

/*
 * The profile: instructions per block start address, in an open-addressing table.
 * Every block adds to its address's slot as it runs (inline, no callback); the start
 * marker zeroes the counts, so the stop marker's dump is the window's alone.
 */
#define PROF_BITS 20
#define PROF_SLOTS (1u << PROF_BITS)
struct prof_slot {
	uint64_t pc;
	uint64_t insns;
};
static struct prof_slot *prof;
static FILE *prof_out;

static struct prof_slot *prof_slot_of(uint64_t pc)
{
	uint64_t h = (pc * 0x9e3779b97f4a7c15ull) >> (64 - PROF_BITS);	/* Fibonacci hashing */

	for (uint32_t i = 0; i < PROF_SLOTS; i++) {
		struct prof_slot *s = &prof[(h + i) & (PROF_SLOTS - 1)];

		if (s->pc == pc || !s->pc) {
			s->pc = pc;
			return s;
		}
	}
	return NULL;	/* full: that block goes unprofiled (it still counts in N) */
}

static void prof_mark(int start)
{
	for (uint32_t i = 0; i < PROF_SLOTS; i++) {
		if (!prof[i].insns)
			continue;
		if (!start)
			fprintf(prof_out, "%" PRIx64 " %" PRIu64 "\n", prof[i].pc, prof[i].insns);
		prof[i].insns = 0;
	}
	if (!start) {
		fputs("end\n", prof_out);
		fflush(prof_out);
	}
}

static void on_marker(unsigned int vcpu_index, void *udata)
{
	if ((uint32_t)(uintptr_t)udata == MARK_START) {
		started = executed;
		counting = 1;
		if (prof)
			prof_mark(1);
	} else if (counting) {
		counting = 0;
		if (prof)
			prof_mark(0);
		fprintf(out, "insns=%" PRIu64 "\n", executed - started);
		fflush(out);
	}
}

static uint32_t marker_of(struct qemu_plugin_insn *insn)
{
	const uint8_t *b = qemu_plugin_insn_data(insn);
	uint32_t disp;

	if (qemu_plugin_insn_size(insn) != MARKER_LEN || memcmp(b, MARKER, sizeof(MARKER)))
		return 0;
	memcpy(&disp, b + sizeof(MARKER), sizeof(disp));     /* x86: little-endian */
	return disp == MARK_START || disp == MARK_STOP ? disp : 0;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb);

	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
	if (prof) {
		struct prof_slot *s = prof_slot_of(qemu_plugin_tb_vaddr(tb));

		if (s)
			qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &s->insns, n);
	}
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		uint32_t mark = marker_of(insn);

		if (mark)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
							       (void *)(uintptr_t)mark);
	}
}

static void close_out(qemu_plugin_id_t id, void *p)
{
	fclose(out);
	if (prof_out)
		fclose(prof_out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
					   int argc, char **argv)
{
	const char *path = NULL, *prof_path = NULL;

	for (int i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
		else if (!strncmp(argv[i], "profile=", 8))
			prof_path = argv[i] + 8;
	}
	if (!path) {
		fprintf(stderr, "insncount: usage: -plugin libinsncount.so,out=FILE[,profile=PFILE]\n");
		return -1;
	}
	out = fopen(path, "a");
	if (!out) {
		perror(path);
		return -1;
	}
	if (prof_path) {
		prof = calloc(PROF_SLOTS, sizeof(*prof));
		prof_out = fopen(prof_path, "a");
		if (!prof || !prof_out) {
			perror(prof_path);
			return -1;
		}
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, close_out, NULL);
	return 0;
}
