// SPDX-License-Identifier: GPL-2.0
/*
 * Each notifier's callbacks, probed one by one as mnmon discovers them (fentry/fexit
 * where the module has BTF, else kprobes): outcome by mode and result, latency, end
 * calls, and start/end pairing inside a failed non-blockable start. A notifier is keyed
 * by the address of its callback (PT_REGS_IP at a kprobe's entry, the function's own
 * address in fentry programs); user space resolves it to symbol and module.
 *
 * Per-CPU hashes are bumped with lookup_or_try_init + an atomic add: bcc's
 * atomic_increment() creates missing entries only in plain hashes (0.26), and
 * fentry programs may be preempted on their CPU.
 * Included by mnmon.bpf.c.
 */
/* struct notifier_key -> struct notifier_calls (mnmon.h) */
BPF_PERCPU_HASH(notifier_invalidations, struct notifier_key, struct notifier_calls, 4096);
BPF_PERCPU_HASH(notifier_latency, struct notifier_lat_key, u64, 16384);
BPF_PERCPU_HASH(notifier_ends, u64, u64, 4096);

/* Callback addresses found in the kernel: user space attaches probes to them.
 * Value: KIND_* | FOUND_* << 8. */
BPF_HASH(discovered, u64, u32, 1024);
/* invalidate_range_end functions mnmon probes: only their starts can be checked for pairing. */
BPF_HASH(probed_end_fns, u64, u8, 1024);
/* 1 once the mm-teardown walk is attached (user space sets it): it counts teardown's calls. */
BPF_ARRAY(release_walked, u8, 1);

#if !COUNTS
/* Callbacks called outside a core start: interval notifiers at mm teardown (mn_itree_release). */
BPF_HASH(cb_inflight, u32, struct cb_inflight, 10240);
#endif

/* A notifier's calls of one kind, mode and result (created at 0). */
static __always_inline struct notifier_calls *calls_of(u64 ip, u8 kind, u8 mode, u8 res)
{
	struct notifier_calls none = {};
	struct notifier_key k = {};

	k.ip = ip;
	k.kind = kind;
	k.mode = mode;
	k.result = res;
	return notifier_invalidations.lookup_or_try_init(&k, &none);
}

/* A timed call's time: the histogram's _sum beside the call's count (calls), and its slot. */
static __always_inline void time_call(struct notifier_calls *calls, u64 ip, u8 mode, u64 ns)
{
	struct notifier_lat_key lk = {};
	u64 zero = 0, *v;

	if (calls)
		__sync_fetch_and_add(&calls->sum_ns, ns);
	lk.ip = ip;
	lk.mode = mode;
	lk.slot = log2_slot(ns);
	v = notifier_latency.lookup_or_try_init(&lk, &zero);
	if (v)
		__sync_fetch_and_add(v, 1);
}

/*
 * One call of a notifier callback. timed: its time was measured (by its own probes);
 * a call the core probes counted for it has no time of its own.
 */
static __always_inline void count_call(u64 ip, u8 kind, u8 mode, u8 res, u64 ns, bool timed)
{
	struct notifier_calls *calls = calls_of(ip, kind, mode, res);

	if (calls)
		__sync_fetch_and_add(&calls->count, 1);
	if (timed)
		time_call(calls, ip, mode, ns);
}

/* n calls the core probes counted for a notifier (untimed). ip 0: calls of a crowd's
 * callbacks beyond the ones it counts apart (user space: notifier="unattributed"). */
static __always_inline void count_calls(u64 ip, u8 kind, u8 mode, u8 res, u64 n)
{
	struct notifier_calls *calls = calls_of(ip, kind, mode, res);

	if (calls)
		__sync_fetch_and_add(&calls->count, n);
}

/* One more call of fn in a tally (struct tally, mnmon.bpf.c). */
static __always_inline void tally_add(struct tally *t, u64 fn)
{
	u32 i;

	t->total++;
#pragma unroll
	for (i = 0; i < MAX_CROWD_FNS; i++) {
		if (t->fn[i] == fn) {
			t->n[i]++;
			return;
		}
		if (!t->fn[i]) {
			t->fn[i] = fn;
			t->n[i] = 1;
			return;
		}
	}
	t->other++;
}

static __always_inline void count_end(u64 ip)
{
	u64 zero = 0, *v = notifier_ends.lookup_or_try_init(&ip, &zero);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* This call (sub's, of callback ip) was counted by the callback's own probes: the core
 * probes leave it alone. */
static __always_inline void mark_seen(struct core_inflight *c, u64 key, u64 ip)
{
	u8 n = c->nseen;

	tally_add(&c->seen_fns, ip);

	if (n < MAX_SEEN)
		c->seen[masked(n, MAX_SEEN - 1)] = key;
	if (n < 255)
		c->nseen = n + 1;
}

static __always_inline bool teardown_walked(void)
{
#if MN_SUBS
	u32 zero = 0;
	u8 *on = release_walked.lookup(&zero);

	return on && *on;
#else
	return false;
#endif
}

#if !COUNTS
/* A callback's entry: ip is the callback, sub its first argument (the subscription). */
static __always_inline void cb_enter(u64 ip, u64 sub, u8 mode)
{
	struct cb_inflight c = {};
	struct core_inflight *core = core_current();
	u32 t = tid();

	c.ts = bpf_ktime_get_ns();
	c.ip = ip;
	c.sub = sub;
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
#endif

/* A list subscription whose start succeeded inside a non-blockable core start awaits its end. */
static __always_inline void track_started(struct core_inflight *core, u64 sub)
{
	u64 ops = 0, end_fn = 0;
	u32 i;

	READ_FIELD(ops, sub, F_MN_OPS);
	if (ops)
		READ_FIELD(end_fn, ops, F_MNOPS_END);
	if (!end_fn || !probed_end_fns.lookup(&end_fn))
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

/*
 * At a list callback's fexit: what the start's return will read of its subscription,
 * read here by BTF (see read_range_btf()). sub_btf: the callback's first argument.
 */
static __always_inline void note_list_sub(struct core_inflight *core, const struct mmu_notifier *sub_btf)
{
	const struct mmu_notifier_ops *ops = (const void *)LOAD_FIELD(u64, sub_btf, F_MN_OPS);

	core->sub_read = (u64)sub_btf;
	core->sub_read_next = LOAD_FIELD(u64, sub_btf, F_MN_HLIST_NEXT);
	core->sub_read_start_fn = ops ? LOAD_FIELD(u64, ops, F_MNOPS_START) : 0;
	core->sub_read_end_fn = ops ? LOAD_FIELD(u64, ops, F_MNOPS_END) : 0;
}

#if !COUNTS
/* sub_btf: a list callback's subscription by BTF (its fexit program), else NULL. */
static __always_inline void cb_exit(void *ctx, u8 kind, u8 res, const struct mmu_notifier *sub_btf)
{
	struct core_inflight *core;
	struct cb_inflight *c;
	u32 t = tid();
	u64 ns;
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
	if (core) {
		/* Inside a core start: its return counts what no probe saw (attribute.bpf.c). */
		mark_seen(core, c->sub, c->ip);
		if (kind == KIND_LIST) {
#if CB_KFUNC
			if (sub_btf)
				note_list_sub(core, sub_btf);
#endif
			core->list_called = 1;
			if (res != RESULT_OK)
				core->list_failed = 1;
		} else if (res != RESULT_OK && c->mode == MODE_NONBLOCKABLE) {
			core->failed_interval = c->sub;
		}
	} else if (teardown_walked()) {
		/* Outside any start: mm teardown, whose walk counted this call (attribute.bpf.c). */
		cb_inflight.delete(&t);
		return;
	}
	count_call(c->ip, kind, c->mode, res, ns, true);

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
#else
/*
 * The counts configuration's callback timing (probes.latency: sampled, in windows user
 * space opens and closes; or always): the walk at the start's return counts every call,
 * so these probes time a call and nothing else. The start time waits in the thread's own
 * record (core_record(): task storage, created once per thread, where the kernel has it),
 * which outside the counts' slow path holds no start: a lookup, not a hash insert and
 * delete per call. A callback may sleep and move CPU, so a per-CPU slot would not do.
 */
static __always_inline void cb_enter(u64 ip, u64 sub, u8 mode)
{
	struct core_inflight *c = core_record(true);

	if (!c)
		return;
	c->cb.ts = bpf_ktime_get_ns();
	c->cb.ip = ip;
	c->cb.mode = mode;
}

static __always_inline void cb_exit(void *ctx, u8 kind, u8 res, const struct mmu_notifier *sub_btf)
{
	struct core_inflight *c = core_record(false);
	u64 ns;

	if (!c || !c->cb.ts)
		return;
	ns = bpf_ktime_get_ns() - c->cb.ts;
	c->cb.ts = 0;
	time_call(calls_of(c->cb.ip, kind, c->cb.mode, res), c->cb.ip, c->cb.mode, ns);
}
#endif /* !COUNTS */

/* An invalidate_range_end: ip the callback, sub its subscription. */
static __always_inline void cb_end(u64 ip, u64 sub)
{
	struct core_inflight *core = core_current();
	u32 i;

	/* An end called from inside a failed start pairs a start that succeeded there. */
	if (core) {
#pragma unroll
		for (i = 0; i < MAX_STARTED; i++)
			if (core->started[i] == sub)
				core->started[i] = 0;
	}
#if !MN_SUBS	/* else the core probes count every end (attribute.bpf.c) */
	count_end(ip);
#endif
}

/* kprobe/kretprobe flavour (user space attaches it where fentry cannot, see watch.py). */
int cb_list_entry(struct pt_regs *ctx)
{
#if MN_API >= 500
	cb_enter(PT_REGS_IP(ctx), PT_REGS_PARM1(ctx), range_mode((void *)PT_REGS_PARM2(ctx)));
#else	/* 4.19: (mn, mm, start, end, bool blockable) */
	cb_enter(PT_REGS_IP(ctx), PT_REGS_PARM1(ctx), PT_REGS_PARM5(ctx) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE);
#endif
	return 0;
}

int cb_list_return(struct pt_regs *ctx)
{
	cb_exit(ctx, KIND_LIST, classify_int((int)PT_REGS_RC(ctx)), NULL);
	return 0;
}

int cb_interval_entry(struct pt_regs *ctx)
{
	cb_enter(PT_REGS_IP(ctx), PT_REGS_PARM1(ctx), range_mode((void *)PT_REGS_PARM2(ctx)));
	return 0;
}

int cb_interval_return(struct pt_regs *ctx)
{
	/* bool invalidate(): false means it would have blocked */
	cb_exit(ctx, KIND_INTERVAL, (PT_REGS_RC(ctx) & 0xff) ? RESULT_OK : RESULT_EAGAIN, NULL);
	return 0;
}

int cb_list_end(struct pt_regs *ctx)
{
	cb_end(PT_REGS_IP(ctx), PT_REGS_PARM1(ctx));
	return 0;
}

#if CB_KFUNC
/*
 * fentry/fexit flavour, on module functions (5.11+ module BTF): loaded per callback by
 * monitor/attach/module_fentry.py, which writes the callback's address over CB_IP_PLACEHOLDER.
 * ctx[i] is argument i; an fexit program finds the return value after the arguments,
 * so there is one per arity (the callback's BTF prototype picks it). A trampoline costs
 * less than half a kprobe's int3 per hit (README, benchmarks).
 */
int cbf_list_entry(u64 *ctx)
{
	cb_enter(CB_IP_PLACEHOLDER, ctx[0], range_mode_btf((void *)ctx[1]));
	return 0;
}

/* int invalidate_range_start(struct mmu_notifier *, const struct mmu_notifier_range *) */
int cbf_list_return2(u64 *ctx)
{
	cb_exit(ctx, KIND_LIST, classify_int((int)ctx[2]), (const struct mmu_notifier *)ctx[0]);
	return 0;
}

int cbf_interval_entry(u64 *ctx)
{
	cb_enter(CB_IP_PLACEHOLDER, ctx[0], range_mode_btf((void *)ctx[1]));
	return 0;
}

/* bool invalidate(struct mmu_interval_notifier *, const struct mmu_notifier_range *, unsigned long) */
int cbf_interval_return3(u64 *ctx)
{
	cb_exit(ctx, KIND_INTERVAL, (ctx[3] & 0xff) ? RESULT_OK : RESULT_EAGAIN, NULL);
	return 0;
}

/* 7.1's bool invalidate_start(..., unsigned long cur_seq, <finish out-parameter>) */
int cbf_interval_return4(u64 *ctx)
{
	cb_exit(ctx, KIND_INTERVAL, (ctx[4] & 0xff) ? RESULT_OK : RESULT_EAGAIN, NULL);
	return 0;
}

int cbf_list_end(u64 *ctx)
{
	cb_end(CB_IP_PLACEHOLDER, ctx[0]);
	return 0;
}
#endif

/* Discovery: every list registration goes through __mmu_notifier_register(sub, mm). */
int on_mmu_notifier_register(struct pt_regs *ctx)
{
	u64 sub = PT_REGS_PARM1(ctx), ops = 0;
	u32 kind_start = KIND_LIST | FOUND_REGISTRATION << 8, kind_end = KIND_LIST_END | FOUND_REGISTRATION << 8;
	u64 fn = 0;

	READ_FIELD(ops, sub, F_MN_OPS);
	if (!ops)
		return 0;
	READ_FIELD(fn, ops, F_MNOPS_START);
	if (fn)
		discovered.update(&fn, &kind_start);
	fn = 0;
	READ_FIELD(fn, ops, F_MNOPS_END);
	if (fn)
		discovered.update(&fn, &kind_end);
	return 0;
}

#if MN_API >= 505	/* interval notifiers exist since 5.5 */
/* mmu_interval_notifier_insert[_locked](sub, mm, start, length, ops) */
int on_interval_insert(struct pt_regs *ctx)
{
	u64 ops = PT_REGS_PARM5(ctx);
	u32 kind = KIND_INTERVAL | FOUND_REGISTRATION << 8;
	u64 fn = 0;

	READ_FIELD(fn, ops, F_MNIOPS_INVALIDATE);
#ifdef F_MNIOPS_INVALIDATE_START	/* 7.1's two-pass interval ops: invalidate_start instead */
	if (!fn)
		READ_FIELD(fn, ops, F_MNIOPS_INVALIDATE_START);
#endif
	if (fn)
		discovered.update(&fn, &kind);
	return 0;
}
#endif

/*
 * A failure pinned on a notifier whose own probes did not see it (by the core probes' walk,
 * or the kernel's log line): it blocked the reaper if this is the reaper's thread, and
 * `mnmon watch` hears of it.
 */
static __always_inline void core_named_failure(void *ctx, u64 fn, u8 kind, u8 mode, u8 res)
{
	struct reap_inflight *reap;
	struct mnmon_event e = {};
	u32 t = tid();

	reap = reap_inflight.lookup(&t);
	if (reap)
		name_blocker(reap, fn);
	e.type = EV_NOTIFIER_FAILED;
	e.ip = fn;
	e.pid = bpf_get_current_pid_tgid() >> 32;
	e.tid = t;
	e.result = res;
	e.kind = kind;
	e.caller = mode;
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	emit(ctx, &e);
}
