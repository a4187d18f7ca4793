// SPDX-License-Identifier: GPL-2.0
/*
 * __mmu_notifier_invalidate_range_start / _end: calls by mode and result, by
 * event, latency of the whole start (all notifiers together), ends.
 * Sections in progress are derived in user space: ok starts minus ends.
 * Included by mnmon.bpf.c.
 */
BPF_PERCPU_ARRAY(invalidate_starts, u64, NR_MODES * NR_RESULTS);	/* [mode][result] */
BPF_PERCPU_ARRAY(invalidations_by_event, u64, NR_EVENTS_TYPES);
BPF_PERCPU_ARRAY(invalidate_ends, u64, 1);
BPF_PERCPU_ARRAY(invalidate_start_latency, u64, NR_MODES * NR_LAT_SLOTS);	/* [mode][log2 ns] */
BPF_PERCPU_ARRAY(invalidate_start_latency_sum_ns, u64, NR_MODES);
BPF_PERCPU_ARRAY(unpaired_starts, u64, 1);
/* Failed starts no probed callback owned: counted for the "unknown" notifier. */
BPF_PERCPU_ARRAY(unattributed_failures, u64, NR_MODES * NR_RESULTS);

static __always_inline void core_start_exit(void *ctx, int ret)
{
	struct core_inflight *c = core_current();
	u32 idx, slot, i, unpaired = 0;
	u64 ns;
	u8 res;

	if (!c)		/* entered before mnmon attached */
		return;
	ns = bpf_ktime_get_ns() - c->ts;
	res = classify_int(ret);
	idx = c->mode * NR_RESULTS + res;
	invalidate_starts.atomic_increment(idx);
	idx = c->event;
	invalidations_by_event.atomic_increment(idx);
	slot = log2_slot(ns);
	idx = c->mode * NR_LAT_SLOTS + slot;
	invalidate_start_latency.atomic_increment(idx);
	idx = c->mode;
	invalidate_start_latency_sum_ns.atomic_increment(idx, ns);

	if (res != RESULT_OK) {
		if (!c->failure_attributed) {
			idx = c->mode * NR_RESULTS + res;
			unattributed_failures.atomic_increment(idx);
		}
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
			u32 zero = 0;

			unpaired_starts.atomic_increment(zero, unpaired);
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
	u32 zero = 0;

	invalidate_ends.atomic_increment(zero);
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
