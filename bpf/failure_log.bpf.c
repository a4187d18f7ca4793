// SPDX-License-Identifier: GPL-2.0
/*
 * Which list notifier failed, from the kernel's own log line. Every list notifier whose
 * start fails is logged by mn_hlist_invalidate_range_start() (mm/mmu_notifier.c, since
 * 4.19), inside the start, on its thread:
 *
 *     pr_info("%pS callback failed with %d in %sblockable context.\n",
 *             ops->invalidate_range_start, _ret, ...);
 *
 * An fentry on vprintk_emit(), which every printk goes through, takes the callback and
 * its result from the line's arguments: the configurations without callback probes (lean,
 * counts) name a failed list notifier among several, at no cost on the invalidation path
 * (printk is rare, this line rarer). It names the reaper's blocker and tells `mnmon watch`
 * here; the start's return takes what it found to count each call (attribute_start()), and
 * a start that failed with nothing logged failed in its interval pass.
 * x86-64's va_list only (the plan keeps it off elsewhere).
 * Included by mnmon.bpf.c.
 */
#ifndef FAILURE_LOG
#define FAILURE_LOG 0
#endif

#if FAILURE_LOG
/* The failures logged on a thread since its current start began. */
struct logged_batch {
	u64 first;		/* when the first was logged */
	u64 last;		/* when the latest was */
	u32 n;			/* how many; 0: none since the last start's return */
};
BPF_TABLE("lru_hash", u32, struct logged_batch, logged_batches, 1024);

/* One callback's logged failures in a thread's batch. */
struct logged_key {
	u64 fn;
	u32 tid;
	u32 pad;
};
struct logged_fn {
	u64 ts;			/* older than its batch's first: an earlier batch's */
	s32 ret;
	u32 n;			/* failures not yet taken by the start's return */
};
BPF_TABLE("lru_hash", struct logged_key, struct logged_fn, logged_fns, 1024);

/* Older than this, a thread's logged failures are not its current start's (a start whose
 * return no probe saw). A start takes microseconds; printing the line to a slow console
 * may take milliseconds. */
#define LOGGED_STALE_NS	1000000000ULL

/* struct __va_list_tag, x86-64 SysV */
struct va_tag {
	u32 gp_offset, fp_offset;
	u64 overflow_arg_area, reg_save_area;
};

#define FAILED_FMT	"\0016%pS callback failed with %d in "	/* KERN_INFO, then the line */

/* 1 once this probe is attached (user space sets it): a failed start with nothing logged
 * then failed in its interval pass. */
BPF_ARRAY(failure_log_on, u8, 1);

KFUNC_PROBE(vprintk_emit, int facility, int level, const void *dev_info, const char *fmt, void *args)
{
	char want[] = FAILED_FMT, got[sizeof(FAILED_FMT) - 1], non = 0;
	struct logged_batch *b, nob = {};
	struct logged_fn *v, nov = {};
	struct logged_key k = {};
	struct va_tag va = {};
	u64 argv[3] = {}, now;
	u32 i, t = tid();

	if (bpf_probe_read_kernel(got, sizeof(got), fmt))
		return 0;
#pragma unroll
	for (i = 0; i < sizeof(got); i++)
		if (got[i] != want[i])
			return 0;
	/* the callback, its result and "non-" or "": the line's first three arguments */
	if (bpf_probe_read_kernel(&va, sizeof(va), args))
		return 0;
	if (va.gp_offset <= 48 - sizeof(argv))
		bpf_probe_read_kernel(argv, sizeof(argv), (void *)(va.reg_save_area + va.gp_offset));
	else if (va.gp_offset >= 48)
		bpf_probe_read_kernel(argv, sizeof(argv), (void *)va.overflow_arg_area);
	if (!argv[0])
		return 0;
	bpf_probe_read_kernel(&non, 1, (void *)argv[2]);

	now = bpf_ktime_get_ns();
	b = logged_batches.lookup_or_try_init(&t, &nob);
	if (!b)
		return 0;
	if (!b->n || now - b->last > LOGGED_STALE_NS)
		b->first = now;
	b->last = now;
	b->n++;
	k.fn = argv[0];
	k.tid = t;
	v = logged_fns.lookup_or_try_init(&k, &nov);
	if (v) {
		if (v->ts < b->first)
			v->n = 0;
		v->ts = now;
		v->ret = (s32)argv[1];
		v->n++;
	}

	/* Who blocked the reaper, and `mnmon watch`: here, once per failure. */
	core_named_failure(ctx, argv[0], KIND_LIST, non == 'n' ? MODE_NONBLOCKABLE : MODE_BLOCKABLE,
			   classify_int((s32)argv[1]));
	return 0;
}

static __always_inline bool failure_log_live(void)
{
	u32 zero = 0;
	u8 *on = failure_log_on.lookup(&zero);

	return on && *on;
}

/* This thread's logged failures, if its start that just returned logged any. */
static __always_inline struct logged_batch *logged_here(void)
{
	u32 t = tid();
	struct logged_batch *b = logged_batches.lookup(&t);

	if (!b || !b->n || bpf_ktime_get_ns() - b->last > LOGGED_STALE_NS)
		return 0;
	return b;
}

/* One call of fn in the start that logged b: its logged result (taken), or RESULT_OK:
 * the kernel logs every list failure. */
static __always_inline u8 take_logged(struct logged_batch *b, u64 fn)
{
	struct logged_key k = {};
	struct logged_fn *v;

	k.fn = fn;
	k.tid = tid();
	v = logged_fns.lookup(&k);
	if (!v || !v->n || v->ts < b->first)
		return RESULT_OK;
	v->n--;
	return classify_int(v->ret);
}

/* The start's return is done with them. */
static __always_inline void logged_done(struct logged_batch *b)
{
	if (b)
		b->n = 0;
}
#else
struct logged_batch;
static __always_inline bool failure_log_live(void) { return false; }
static __always_inline struct logged_batch *logged_here(void) { return 0; }
static __always_inline u8 take_logged(struct logged_batch *b, u64 fn) { return RESULT_OK; }
static __always_inline void logged_done(struct logged_batch *b) {}
#endif
