// SPDX-License-Identifier: GPL-2.0
/*
 * __mmu_notifier_invalidate_range_start / _end: calls by mode and result, by
 * event, latency of the whole start (all notifiers together), ends.
 * Sections in progress are derived in user space: ok starts minus ends.
 * Included by mnmon.bpf.c.
 */
/*
 * Every count of the core probes in one per-CPU record: one lookup per probe hit
 * instead of one per counter. User space reads the fields by these names
 * (monitor/readers.py). Indexes are masked (see masked()): each 6-entry array is
 * followed by at least 2 more entries of the record, so index 7 stays inside it.
 */
struct core_stats {
	u64 invalidate_starts[NR_MODES * NR_RESULTS];			/* [mode][result] */
	u64 unattributed_failures[NR_MODES * NR_RESULTS];		/* failed, no probed callback owned it */
	u64 invalidations_by_event[NR_EVENTS_TYPES];
	u64 invalidate_start_latency[NR_MODES * NR_LAT_SLOTS];		/* [mode][log2 ns] */
	u64 invalidate_start_latency_sum_ns[NR_MODES];
	u64 invalidate_ends[1];
	u64 unpaired_starts[1];
};
BPF_PERCPU_ARRAY(core_stats, struct core_stats, 1);

/*
 * idx & mask, for the verifier: every index here is in range already, but the
 * compiler drops a clamp it can prove redundant (or checks a zero-extended copy),
 * which leaves the verifier an unbounded access. It cannot see through the asm.
 */
static __always_inline u64 masked(u64 idx, u64 mask)
{
	asm volatile("" : "+r"(idx));
	return idx & mask;
}

static __always_inline struct core_stats *core_stats_here(void)
{
	u32 zero = 0;

	return core_stats.lookup(&zero);
}

static __always_inline void core_start_exit(void *ctx, int ret)
{
	struct core_inflight *c = core_current();
	struct core_stats *st = core_stats_here();
	u64 ns, mode, res;
	u32 i, unpaired = 0;

	if (!c)		/* entered before mnmon attached */
		return;
	if (!st) {
		core_finish(c);
		return;
	}
	ns = bpf_ktime_get_ns() - c->ts;
	res = classify_int(ret);
	mode = c->mode;
	__sync_fetch_and_add(&st->invalidate_starts[masked(mode * NR_RESULTS + res, 7)], 1);
	__sync_fetch_and_add(&st->invalidations_by_event[masked(c->event, NR_EVENTS_TYPES - 1)], 1);
	__sync_fetch_and_add(&st->invalidate_start_latency[masked(mode * NR_LAT_SLOTS + log2_slot(ns),
								    NR_MODES * NR_LAT_SLOTS - 1)], 1);
	__sync_fetch_and_add(&st->invalidate_start_latency_sum_ns[masked(mode, NR_MODES - 1)], ns);

	if (res != RESULT_OK) {
		if (!c->failure_attributed)
			__sync_fetch_and_add(&st->unattributed_failures[masked(mode * NR_RESULTS + res, 7)], 1);
		/*
		 * Before c2655835fd8c (5.12; 5.10.y backport) a failed non-blockable
		 * start skipped the end of every notifier whose start had succeeded.
		 * Since then the core ends them itself, inside the failing start.
		 */
#pragma unroll
		for (i = 0; i < MAX_STARTED; i++)
			if (c->started[i])
				unpaired++;
		if (unpaired) {
			struct mnmon_event e = {};

			__sync_fetch_and_add(&st->unpaired_starts[0], unpaired);
			e.type = EV_UNPAIRED_START;
			e.pid = bpf_get_current_pid_tgid() >> 32;
			e.tid = tid();
			e.result = unpaired;
			bpf_get_current_comm(&e.comm, sizeof(e.comm));
			emit(ctx, &e);
		}
	}
	core_finish(c);
}

static __always_inline void core_end(void)
{
	struct core_stats *st = core_stats_here();

	if (st)
		__sync_fetch_and_add(&st->invalidate_ends[0], 1);
}

/* kprobe/kretprobe flavour, attached from user space. */
int core_start_entry(struct pt_regs *ctx)
{
#if MN_API >= 500
	const struct mmu_notifier_range *range = (void *)PT_REGS_PARM1(ctx);

	core_begin(range_mode(range), range_event(range));
#else	/* 4.19: (mm, start, end, bool blockable) */
	core_begin(PT_REGS_PARM4(ctx) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE, 0);
#endif
	return 0;
}

int core_start_return(struct pt_regs *ctx)
{
	core_start_exit(ctx, (int)PT_REGS_RC(ctx));
	return 0;
}

int core_end_entry(struct pt_regs *ctx)
{
	core_end();
	return 0;
}

#if CORE_KFUNC
/* fentry/fexit flavour: bcc attaches these when it loads the program. */
KFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range)
{
	core_begin(range_mode(range), range_event(range));
	return 0;
}

KRETFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range, int ret)
{
	core_start_exit(ctx, ret);
	return 0;
}

KFUNC_PROBE(__mmu_notifier_invalidate_range_end, const struct mmu_notifier_range *range)
{
	core_end();
	return 0;
}
#endif
