// SPDX-License-Identifier: GPL-2.0
/*
 * Each notifier's callbacks, kprobed one by one as mnmon discovers them:
 * outcome by mode and result, latency, end calls, and start/end pairing inside
 * a failed non-blockable start. A notifier is keyed by the address of its
 * callback (PT_REGS_IP at entry); user space resolves it to symbol and module.
 *
 * Per-CPU hashes are bumped with lookup_or_try_init + an atomic add: bcc's
 * atomic_increment() creates missing entries only in plain hashes (0.26), and
 * fentry programs may be preempted on their CPU.
 * Included by mnmon.bpf.c.
 */
struct notifier_key {
	u64 ip;
	u8 kind;
	u8 mode;
	u8 result;
	u8 pad[5];
};
/* Calls and their time together: one lookup for both (user space sums ns by ip, mode). */
struct notifier_calls {
	u64 count;
	u64 sum_ns;
};
BPF_PERCPU_HASH(notifier_invalidations, struct notifier_key, struct notifier_calls, 4096);

struct notifier_lat_key {
	u64 ip;
	u8 mode;
	u8 slot;
	u8 pad[6];
};
BPF_PERCPU_HASH(notifier_latency, struct notifier_lat_key, u64, 16384);
BPF_PERCPU_HASH(notifier_ends, u64, u64, 4096);

/* Callback addresses seen at registration: user space attaches probes to them. */
BPF_HASH(discovered, u64, u32, 1024);
/* invalidate_range_end functions mnmon probes: only their starts can be checked for pairing. */
BPF_HASH(probed_end_fns, u64, u8, 1024);

/* Callbacks called outside a core start: interval notifiers at mm teardown (mn_itree_release). */
BPF_HASH(cb_inflight, u32, struct cb_inflight, 10240);

static __always_inline void cb_enter(struct pt_regs *ctx, u8 mode)
{
	struct cb_inflight c = {};
	struct core_inflight *core = core_current();
	u32 t = tid();

	c.ts = bpf_ktime_get_ns();
	c.ip = PT_REGS_IP(ctx);
	c.sub = PT_REGS_PARM1(ctx);
	c.mode = mode;
	/*
	 * Inside a core start, nearly always, the callback rides in the start's record:
	 * a lookup instead of a hash insert and delete per callback (the hot spot of
	 * the invalidation path in bpf_stats).
	 */
	if (core && !core->cb.ip) {
		core->cb = c;
		return;
	}
	cb_inflight.update(&t, &c);
}

/* A list subscription whose start succeeded inside a non-blockable core start awaits its end. */
static __always_inline void track_started(struct core_inflight *core, u64 sub)
{
	const struct mmu_notifier_ops *ops = NULL;
	void *end_fn = NULL;
	u32 i;

	bpf_probe_read_kernel(&ops, sizeof(ops), &((struct mmu_notifier *)sub)->ops);
	if (ops)
		bpf_probe_read_kernel(&end_fn, sizeof(end_fn), &ops->invalidate_range_end);
	if (!end_fn || !probed_end_fns.lookup((u64 *)&end_fn))
		return;
#pragma unroll
	for (i = 0; i < MAX_STARTED; i++) {
		if (!core->started[i]) {
			core->started[i] = sub;
			return;
		}
	}
}

static __always_inline void name_blocker(struct reap_inflight *reap, u64 ip)
{
	u32 i;

#pragma unroll
	for (i = 0; i < MAX_BLOCKERS; i++) {
		if (reap->blockers[i] == ip)
			return;
		if (!reap->blockers[i]) {
			reap->blockers[i] = ip;
			reap->nblockers++;
			return;
		}
	}
}

static __always_inline void cb_exit(struct pt_regs *ctx, u8 kind, u8 res)
{
	struct notifier_calls none = {}, *calls;
	struct notifier_lat_key lk = {};
	struct notifier_key k = {};
	struct core_inflight *core;
	struct cb_inflight *c;
	u32 t = tid();
	u64 ns, zero = 0, *v;
	bool riding = false;

	core = core_current();
	if (core && core->cb.ip) {
		c = &core->cb;
		riding = true;
	} else {
		c = cb_inflight.lookup(&t);
	}
	if (!c)
		return;
	ns = bpf_ktime_get_ns() - c->ts;
	k.ip = c->ip;
	k.kind = kind;
	k.mode = c->mode;
	k.result = res;
	calls = notifier_invalidations.lookup_or_try_init(&k, &none);
	if (calls) {
		__sync_fetch_and_add(&calls->count, 1);
		__sync_fetch_and_add(&calls->sum_ns, ns);
	}
	lk.ip = c->ip;
	lk.mode = c->mode;
	lk.slot = log2_slot(ns);
	v = notifier_latency.lookup_or_try_init(&lk, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);

	/* The rest matters only off the hot path: failures and the reaper's calls. */
	if (res != RESULT_OK || c->mode == MODE_NONBLOCKABLE) {
		if (res != RESULT_OK) {
			struct reap_inflight *reap = reap_inflight.lookup(&t);
			struct mnmon_event e = {};

			if (core)
				core->failure_attributed = 1;
			if (reap)
				name_blocker(reap, c->ip);
			e.type = EV_NOTIFIER_FAILED;
			e.ip = c->ip;
			e.duration_ns = ns;
			e.pid = bpf_get_current_pid_tgid() >> 32;
			e.tid = t;
			e.result = res;
			e.kind = kind;
			e.caller = c->mode;
			bpf_get_current_comm(&e.comm, sizeof(e.comm));
			emit(ctx, &e);
		} else if (kind == KIND_LIST && core) {
			track_started(core, c->sub);
		}
	}
	if (riding && core)
		core->cb.ip = 0;
	else
		cb_inflight.delete(&t);
}

int cb_list_entry(struct pt_regs *ctx)
{
#if MN_API >= 500
	cb_enter(ctx, range_mode((void *)PT_REGS_PARM2(ctx)));
#else	/* 4.19: (mn, mm, start, end, bool blockable) */
	cb_enter(ctx, PT_REGS_PARM5(ctx) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE);
#endif
	return 0;
}

int cb_list_return(struct pt_regs *ctx)
{
	cb_exit(ctx, KIND_LIST, classify_int((int)PT_REGS_RC(ctx)));
	return 0;
}

int cb_interval_entry(struct pt_regs *ctx)
{
	cb_enter(ctx, range_mode((void *)PT_REGS_PARM2(ctx)));
	return 0;
}

int cb_interval_return(struct pt_regs *ctx)
{
	/* bool invalidate(): false means it would have blocked */
	cb_exit(ctx, KIND_INTERVAL, (PT_REGS_RC(ctx) & 0xff) ? RESULT_OK : RESULT_EAGAIN);
	return 0;
}

int cb_list_end(struct pt_regs *ctx)
{
	u64 ip = PT_REGS_IP(ctx), sub = PT_REGS_PARM1(ctx);
	struct core_inflight *core;
	u32 i;
	u64 zero = 0, *v;

	v = notifier_ends.lookup_or_try_init(&ip, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
	/* An end called from inside a start pairs a start that succeeded there. */
	core = core_current();
	if (!core)
		return 0;
#pragma unroll
	for (i = 0; i < MAX_STARTED; i++)
		if (core->started[i] == sub)
			core->started[i] = 0;
	return 0;
}

/* Discovery: every list registration goes through __mmu_notifier_register(sub, mm). */
int on_mmu_notifier_register(struct pt_regs *ctx)
{
	struct mmu_notifier *sub = (void *)PT_REGS_PARM1(ctx);
	const struct mmu_notifier_ops *ops = NULL;
	u32 kind_start = KIND_LIST, kind_end = KIND_LIST_END;
	u64 fn = 0;

	bpf_probe_read_kernel(&ops, sizeof(ops), &sub->ops);
	if (!ops)
		return 0;
	bpf_probe_read_kernel(&fn, sizeof(fn), &ops->invalidate_range_start);
	if (fn)
		discovered.update(&fn, &kind_start);
	fn = 0;
	bpf_probe_read_kernel(&fn, sizeof(fn), &ops->invalidate_range_end);
	if (fn)
		discovered.update(&fn, &kind_end);
	return 0;
}

#if MN_API >= 505	/* interval notifiers exist since 5.5 */
/* mmu_interval_notifier_insert[_locked](sub, mm, start, length, ops) */
int on_interval_insert(struct pt_regs *ctx)
{
	const struct mmu_interval_notifier_ops *ops = (void *)PT_REGS_PARM5(ctx);
	u32 kind = KIND_INTERVAL;
	u64 fn = 0;

	bpf_probe_read_kernel(&fn, sizeof(fn), &ops->invalidate);
	if (fn)
		discovered.update(&fn, &kind);
	return 0;
}
#endif
