// SPDX-License-Identifier: GPL-2.0
/*
 * __mmu_notifier_invalidate_range_start / _end: calls by mode and result, by
 * event, latency of the whole start (all notifiers together), ends.
 * Sections in progress are derived in user space: ok starts minus ends.
 * Included by mnmon.bpf.c.
 */
/* Every count of the core probes: struct core_stats (mnmon.h), one per-CPU record. */
BPF_PERCPU_ARRAY(core_stats, struct core_stats, 1);

static __always_inline struct core_stats *core_stats_here(void)
{
	u32 zero = 0;

	return core_stats.lookup(&zero);
}

/* At a core start's return. timed: its entry was probed (the lean and counts fexits have none). */
static __always_inline void core_start_exit(void *ctx, int ret, bool timed)
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
	res = classify_int(ret);
	mode = c->mode;
	__sync_fetch_and_add(&st->invalidate_starts[masked(mode * NR_RESULTS + res, NR_MODES * NR_RESULTS - 1)], 1);
	if (timed || COUNTS)
		__sync_fetch_and_add(&st->invalidations_by_event[masked(c->event, NR_EVENTS_TYPES - 1)], 1);
	if (timed) {
		ns = bpf_ktime_get_ns() - c->ts;
		__sync_fetch_and_add(&st->invalidate_start_latency[masked(mode * NR_LAT_SLOTS + log2_slot(ns),
									    NR_MODES * NR_LAT_SLOTS - 1)], 1);
		__sync_fetch_and_add(&st->invalidate_start_latency_sum_ns[masked(mode, NR_MODES - 1)], ns);
	}

	if (attribute_start(ctx, c, ret))
		c->failure_attributed = 1;
	if (res != RESULT_OK) {
		if (!c->failure_attributed)
			__sync_fetch_and_add(&st->unattributed_failures[masked(mode * NR_RESULTS + res, NR_MODES * NR_RESULTS - 1)], 1);
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

/* subs_now: the mm's subscriptions by BTF (fentry), else NULL. */
static __always_inline void core_end(u64 mm, const char *subs_now)
{
	struct core_stats *st = core_stats_here();

	if (st)
		__sync_fetch_and_add(&st->invalidate_ends[0], 1);
	attribute_end(mm, subs_now);
}

/* The mm of the core end's first argument: a range since 5.0, the mm itself in 4.19. */
static __always_inline u64 end_mm(u64 arg)
{
#if MN_API >= 500
	u64 mm = 0;

	READ_FIELD(mm, arg, F_RANGE_MM);
	return mm;
#else
	return arg;
#endif
}

#if KPROBE_TWINS
/* kprobe/kretprobe flavour, attached from user space. */
int core_start_entry(struct pt_regs *ctx)
{
	struct range_facts f = {};

#if MN_API >= 500
	read_range((void *)PT_REGS_PARM1(ctx), &f);
#else	/* 4.19: (mm, start, end, bool blockable) */
	f.mm = PT_REGS_PARM1(ctx);
	f.start = PT_REGS_PARM2(ctx);
	f.end = PT_REGS_PARM3(ctx);
	f.mode = PT_REGS_PARM4(ctx) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
#endif
	record_intervals(core_begin(&f));
	return 0;
}

int core_start_return(struct pt_regs *ctx)
{
	core_start_exit(ctx, (int)PT_REGS_RC(ctx), true);
	return 0;
}

int core_end_entry(struct pt_regs *ctx)
{
	core_end(end_mm(PT_REGS_PARM1(ctx)), NULL);
	return 0;
}
#endif

#if CORE_KFUNC && COUNTS && TIME_START
/*
 * probes.latency: always, on the counts configuration: the core start timed too, by an
 * entry on the same trampoline as the counts fexit (one program run more, not another
 * trampoline). The start time waits in the thread's own record: a blockable start may
 * sleep and move CPU. An entry seen without its return (attached between the two) leaves
 * start_ts to the thread's next entry, which writes over it.
 */
KFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range)
{
	struct core_inflight *c = core_record(true);

	if (c)
		c->start_ts = bpf_ktime_get_ns();
	return 0;
}

/* At the counts fexit, before anything else reads the record: the start's time, by mode. */
static __always_inline void time_start(const struct mmu_notifier_range *range)
{
	struct core_inflight *c = core_record(false);
	struct core_stats *st;
	u64 ns, mode;

	if (!c || !c->start_ts)
		return;
	ns = bpf_ktime_get_ns() - c->start_ts;
	c->start_ts = 0;
	st = core_stats_here();
	if (!st)
		return;
	mode = range_mode_btf(range);
	__sync_fetch_and_add(&st->invalidate_start_latency[masked(mode * NR_LAT_SLOTS + log2_slot(ns),
								    NR_MODES * NR_LAT_SLOTS - 1)], 1);
	__sync_fetch_and_add(&st->invalidate_start_latency_sum_ns[masked(mode, NR_MODES - 1)], ns);
}
#else
static __always_inline void time_start(const struct mmu_notifier_range *range) {}
#endif

#if CORE_KFUNC && COUNTS
/*
 * The counts configuration (latency off, attach_plan.py): this fexit and the end's fentry
 * are the only programs on the invalidation path, two trampoline hits per invalidation.
 * The common start, blockable and successful on an mm with list notifiers only (a KVM
 * VM's), counts itself, its event and each list notifier's call in place, and leaves
 * its list's one end callback for the end (struct end_hint). Any other start takes the
 * full path: the walk of the mm's subscriptions, with failures named by the kernel's own
 * log line (failure_log.bpf.c) or, among several intervals, not known.
 */
KRETFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range, int ret)
{
	struct range_facts f = {};
	struct core_stats *st;
	const char *subs;

	time_start(range);
	/* A BTF-typed argument: plain loads (the verifier guards them), not helper calls. */
	if ((LOAD_FIELD(u32, range, F_RANGE_FLAGS) & RANGE_BLOCKABLE) && !ret) {
		subs = subs_btf(range);
		if (subs && !LOAD_FIELD(u8, subs, F_SUBS_HAS_ITREE)) {
			st = core_stats_here();
			if (st) {
				__sync_fetch_and_add(&st->invalidate_starts[MODE_BLOCKABLE * NR_RESULTS + RESULT_OK], 1);
				__sync_fetch_and_add(&st->invalidations_by_event[masked(
					event_index(LOAD_FIELD(u32, range, F_RANGE_EVENT)), NR_EVENTS_TYPES - 1)], 1);
			}
			count_list_ok(LOAD_FIELD(u64, range, F_RANGE_MM), LOAD_FIELD(u64, subs, F_SUBS_LIST));
			return 0;
		}
	}
	read_range_btf(range, &f);
	record_intervals_btf(core_begin(&f), range, true, ret);
	core_start_exit(ctx, ret, false);
	return 0;
}
#elif CORE_KFUNC && LEAN
/*
 * The lean configuration (attach_plan.py): this fexit is the only program on the
 * invalidation path, one trampoline hit per invalidation. fexit sees the arguments and
 * the return value. Only a non-blockable start can fail without a kernel WARN, and those
 * are the rare ones (the OOM reaper, process_mrelease): a blockable start that succeeded
 * is one per-CPU count; any other start takes the full path, the walk of the mm's
 * subscriptions included, which counts each notifier's call and names who failed (and
 * blocked the reaper) where the start's result tells. Dropped: latency, counts by event,
 * ends, callback probes and each notifier's blockable calls.
 */
KRETFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range, int ret)
{
	struct range_facts f = {};
	struct core_stats *st;

	/* A BTF-typed argument: a plain load (the verifier guards it), not a helper call. */
	if ((LOAD_FIELD(u32, range, F_RANGE_FLAGS) & RANGE_BLOCKABLE) && !ret) {
		st = core_stats_here();
		if (st)
			__sync_fetch_and_add(&st->invalidate_starts[MODE_BLOCKABLE * NR_RESULTS + RESULT_OK], 1);
		return 0;
	}
	/* The subscriptions are read at the return: a failed interval pass may have applied
	 * deferred inserts and removals by then (mn_itree_inv_end), a rare miscount of those. */
	read_range_btf(range, &f);
	record_intervals_btf(core_begin(&f), range, true, ret);
	core_start_exit(ctx, ret, false);
	return 0;
}
#elif CORE_KFUNC
/* fentry/fexit flavour: user space attaches these (probes.attach_order). */
KFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range)
{
	struct range_facts f = {};

	read_range_btf(range, &f);
	record_intervals_btf(core_begin(&f), range, false, 0);
	return 0;
}

KRETFUNC_PROBE(__mmu_notifier_invalidate_range_start, const struct mmu_notifier_range *range, int ret)
{
	core_start_exit(ctx, ret, true);
	return 0;
}
#endif

#if CORE_KFUNC

KFUNC_PROBE(__mmu_notifier_invalidate_range_end, const struct mmu_notifier_range *range)
{
	core_end(LOAD_FIELD(u64, range, F_RANGE_MM), subs_btf(range));
	return 0;
}
#endif
