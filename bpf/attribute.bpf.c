// SPDX-License-Identifier: GPL-2.0
/*
 * Every notifier counted from its first invalidation, by the core probes.
 *
 * A callback's own probes attach only once user space has found it (in BTF, at
 * registration, or here), seconds after a driver may have registered and started
 * working; a module without BTF is found only then. So the core probes count, from
 * the mm's subscriptions, every call that no callback probe counted:
 *
 *   start return  the list and interval subscriptions the kernel called (mm/mmu_notifier.c:
 *                 overlapping intervals in tree order, stopping at the first that fails
 *                 non-blockable; then, only if none failed, every list notifier with an
 *                 invalidate_range_start; on a failed list pass, every end since
 *                 c2655835fd8c). A callback probe that counted a call marks it seen in the
 *                 start's record, so each call is counted once, by one side.
 *   end entry     every list notifier's invalidate_range_end: ends have no outcome to
 *                 observe, so no callback probe counts them (cb_list_end only pairs).
 *   mm teardown   __mmu_notifier_release calls every interval notifier (blockable), outside
 *                 any start: the walk counts them all, and cb_exit leaves them alone.
 *
 * Counting what the kernel must have called, rather than what a probe saw, also covers a
 * kprobe that did not run: a kprobe program is skipped, silently, while another BPF program
 * or a bpf(2) map operation holds the CPU's bpf_prog_active (a scrape reading the maps).
 *
 * The result of such a call is the start's own when that tells it (every call of a start
 * that returned 0 succeeded; a failure with one candidate is that candidate's); otherwise
 * it is counted as RESULT_UNOBSERVED. Its time is never known: histograms hold only
 * calls timed by their own probes. Found callbacks go to `discovered`, for user space
 * to probe.
 * Included by mnmon.bpf.c.
 */
#if MN_SUBS
_Static_assert(!(F_RB_RIGHT % 8) && !(F_RB_PARENT_COLOR % 8) && !(F_ITN_START % 8) && !(F_ITN_LAST % 8) &&
	       !(F_MN_HLIST_NEXT % 8) && !(F_MN_OPS % 8) && !(F_MNOPS_START % 8) && !(F_MNOPS_END % 8),
	       "RAW_U64 reads 8-byte fields by index");
#define RB_DEPTH	24	/* an rb tree of 8 subscriptions is at most 6 deep; 2^12 at 24 */

/*
 * The sequence check: which interval callback failed a non-blockable start, and which ran
 * before it, without probing the callbacks. mn_itree_invalidate() passes each callback the
 * start's cur_seq (odd) and stops at the first that returns false; a callback that returns
 * true records cur_seq in its subscription (mmu_interval_set_seq(), which every driver
 * that reads under mmu_interval_read_begin() must call). So after a failed start the
 * overlapping subscriptions holding cur_seq are the ones that returned true, in tree order,
 * and the first that does not hold it failed, if its callback is one that always records
 * it: learnt from the starts that succeeded (every callback there returned true), per
 * callback, in seq_habits. Offsets from BTF, where the kernel has the fields.
 */
#if defined(F_MNI_SEQ) && defined(F_SUBS_SEQ)
#define SEQ_CHECK	1
_Static_assert(!(F_MNI_SEQ % 8) && !(F_SUBS_SEQ % 8), "RAW_U64 reads 8-byte fields by index");
#else
#define SEQ_CHECK	0
#define F_MNI_SEQ	0
#define F_SUBS_SEQ	0
#endif
/* An interval subscription's fields the walk reads, from its start, in one copy. */
#define ITV_START	(F_MNI_TREE + F_ITN_START)
#define ITV_LAST	(F_MNI_TREE + F_ITN_LAST)
#define ITV_SPAN	(SEQ_CHECK ? SPAN3(ITV_START, ITV_LAST, F_MNI_SEQ) : MAX2(ITV_START, ITV_LAST) + 8)
_Static_assert(!(ITV_START % 8) && !(ITV_LAST % 8), "RAW_U64 reads 8-byte fields by index");

/* struct mmu_notifier_subscriptions is private to mm/mmu_notifier.c: offsets from BTF. */
static __always_inline u64 mm_subscriptions(u64 mm)
{
	u64 subs = 0;

	READ_FIELD(subs, mm, F_MM_SUBS);
	return subs;
}

static __always_inline bool was_seen(struct core_inflight *c, u64 key)
{
	u32 i;

#pragma unroll
	for (i = 0; i < MAX_SEEN; i++)
		if (c->seen[i] == key)
			return true;
	return false;
}

static __always_inline void discover(u64 fn, u32 kind)
{
	u32 v = kind | FOUND_INVALIDATION << 8;

	if (!discovered.lookup(&fn))
		discovered.update(&fn, &v);
}

/* The in-order successor of an rb_node (lib/rbtree.c rb_next()); 0 at the end or too deep. */
static __always_inline u64 rb_next_node(u64 node)
{
	u64 n[SPAN3(F_RB_PARENT_COLOR, F_RB_RIGHT, F_RB_LEFT) / 8] = {};
	u64 up, right;
	u32 i;

	bpf_probe_read_kernel(n, sizeof(n), (void *)node);
	if (RAW_U64(n, F_RB_RIGHT)) {
		node = RAW_U64(n, F_RB_RIGHT);
#pragma clang loop unroll(disable)
		for (i = 0; i < RB_DEPTH; i++) {
			u64 left = 0;

			READ_FIELD(left, node, F_RB_LEFT);
			if (!left)
				return node;
			node = left;
		}
		return 0;
	}
#pragma clang loop unroll(disable)
	for (i = 0; i < RB_DEPTH; i++) {
		up = RAW_U64(n, F_RB_PARENT_COLOR) & ~3UL;
		if (!up)
			return 0;
		right = 0;
		READ_FIELD(right, up, F_RB_RIGHT);
		if (node != right)
			return up;
		node = up;
		bpf_probe_read_kernel(n, sizeof(n), (void *)node);
	}
	return 0;
}

/* An interval subscription's invalidate callback (7.1's two-pass ops: invalidate_start). */
static __always_inline u64 interval_fn(u64 sub)
{
	u64 ops = 0, fn = 0;

	READ_FIELD(ops, sub, F_MNI_OPS);
	if (!ops)
		return 0;
	READ_FIELD(fn, ops, F_MNIOPS_INVALIDATE);
#ifdef F_MNIOPS_INVALIDATE_START
	if (!fn)
		READ_FIELD(fn, ops, F_MNIOPS_INVALIDATE_START);
#endif
	return fn;
}

/* The walk's sequence check of the overlapping subscription sub, at position n, holding
 * seq (see SEQ_CHECK); fn: its callback, for one beyond subs[]. */
static __always_inline void check_seq(struct interval_walk *w, u32 n, u64 sub, u64 seq, u64 fn)
{
	if (seq != w->seq) {
		if (!w->stale_at) {
			w->stale_at = n + 1;
			w->stale = sub;
		}
	} else if (w->stale_at) {
		w->kept_after++;
	} else if (n < MAX_SUBS) {
		w->kept |= 1 << masked(n, MAX_SUBS - 1);
	} else {
		tally_add(&w->lead, fn);
	}
}

/*
 * The interval subscriptions overlapping [start, last], in the order the kernel calls
 * them (interval_tree_iter_first/next: by start), from the tree's leftmost node, into w
 * (map memory, zeroed but for seq): the first MAX_SUBS one by one, the rest by callback.
 */
static __always_inline void walk_intervals(u64 node, u64 start, u64 last, struct interval_walk *w)
{
	u64 sub, fn;
	u32 i, n;

#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_WALK && node; i++) {
		/* node is the rb member of an interval_tree_node, itself the interval_tree
		 * member of a struct mmu_interval_notifier (both at 0 as of 7.x) */
		u64 it[ITV_SPAN / 8] = {};

		sub = node - F_ITN_RB - F_MNI_TREE;
		bpf_probe_read_kernel(it, sizeof(it), (void *)sub);
		if (RAW_U64(it, ITV_START) > last)	/* in order of start: nothing further overlaps */
			return;
		if (RAW_U64(it, ITV_LAST) >= start) {
			n = w->n;
			fn = 0;
			if (n < MAX_SUBS) {
				w->subs[masked(n, MAX_SUBS - 1)] = sub;
			} else {
				fn = interval_fn(sub);
				tally_add(&w->crowd, fn);
			}
			if (SEQ_CHECK && w->seq)
				check_seq(w, n, sub, RAW_U64(it, F_MNI_SEQ), fn);
			w->n = n + 1;
		}
		node = rb_next_node(node);
	}
	if (node)
		w->capped = 1;
}

/*
 * At a core start's entry: the interval subscriptions it will call. Taken here, so that
 * the return program, which decides what each call was, reads a plain array.
 */
struct subs_head {
	u64 list_first;		/* list.first: the list's first subscription */
	u8 has_itree;
	u64 leftmost;		/* itree.rb_leftmost */
	u64 seq;		/* invalidate_seq (SEQ_CHECK) */
};

/* The fields of subs the walk needs, in one read (they share a cache line). */
static __always_inline void read_subs_head(u64 subs, struct subs_head *h)
{
	u64 raw[MAX2(SPAN3(F_SUBS_LIST, F_SUBS_HAS_ITREE, F_SUBS_LEFTMOST), F_SUBS_SEQ + 8) / 8] = {};

	bpf_probe_read_kernel(raw, sizeof(raw), (void *)subs);
	RAW_FIELD(h->list_first, raw, F_SUBS_LIST);
	RAW_FIELD(h->has_itree, raw, F_SUBS_HAS_ITREE);
	RAW_FIELD(h->leftmost, raw, F_SUBS_LEFTMOST);
	h->seq = SEQ_CHECK ? RAW_U64(raw, F_SUBS_SEQ) : 0;
}

#if CORE_KFUNC
/* The same, by BTF (see read_range_btf()); subs: range->mm->notifier_subscriptions. */
static __always_inline void read_subs_head_btf(const char *subs, struct subs_head *h)
{
	h->list_first = LOAD_FIELD(u64, subs, F_SUBS_LIST);
	h->has_itree = LOAD_FIELD(u8, subs, F_SUBS_HAS_ITREE);
	h->leftmost = LOAD_FIELD(u64, subs, F_SUBS_LEFTMOST);
	h->seq = SEQ_CHECK ? LOAD_FIELD(u64, subs, F_SUBS_SEQ) : 0;
}

static __always_inline const char *subs_btf(const struct mmu_notifier_range *range)
{
	const char *mm = (const char *)LOAD_FIELD(u64, range, F_RANGE_MM);

	return (const char *)LOAD_FIELD(u64, mm, F_MM_SUBS);
}
#endif

/*
 * The start's cur_seq, for a walk at its return (which returned ret) to check against, or
 * 0: seq, the mm's invalidate_seq now, is odd while any start of the mm is running. A
 * start that succeeded is still running (its end follows): seq is its cur_seq. One that
 * failed ended its part (mn_itree_inv_end), making seq even, cur_seq + 1, if it was the
 * only one running; if another still runs, its cur_seq is not known.
 */
static __always_inline u64 cur_seq_at_return(u64 seq, int ret)
{
	if (!ret)
		return seq & 1 ? seq : 0;
	return seq & 1 ? 0 : seq - 1;
}

/* c: the start's record; subs and h: its mm's subscriptions and their head; at_return:
 * read at the start's return, which returned ret (then the walk checks sequences). */
static __always_inline void record_subs(struct core_inflight *c, u64 subs, struct subs_head *h, bool at_return,
					int ret)
{
	u32 n;

	c->subs = subs;
	c->list_first = h->list_first;
	if (!h->has_itree || c->end <= c->start)
		return;
	if (SEQ_CHECK && at_return)
		c->itv.seq = cur_seq_at_return(h->seq, ret);
	walk_intervals(h->leftmost, c->start, c->end - 1, &c->itv);
	if (c->itv.capped)
		count_lost();
	n = c->itv.n;
	c->nintervals = n < MAX_SUBS ? n : MAX_SUBS;
}

/* At a core start's entry, kprobe flavour: the subscriptions it will call. */
static __always_inline void record_intervals(struct core_inflight *c)
{
	struct subs_head h;
	u64 subs;

	if (!c)
		return;
	subs = mm_subscriptions(c->mm);
	if (!subs)
		return;
	read_subs_head(subs, &h);
	record_subs(c, subs, &h, false, 0);
}

#if CORE_KFUNC
/* The same in fentry/fexit programs, from the range they were given; at_return: in an
 * fexit, the start having returned ret. */
static __always_inline void record_intervals_btf(struct core_inflight *c, const struct mmu_notifier_range *range,
						 bool at_return, int ret)
{
	const char *subs;
	struct subs_head h;

	if (!c)
		return;
	subs = subs_btf(range);
	if (!subs)
		return;
	read_subs_head_btf(subs, &h);
	record_subs(c, (u64)subs, &h, at_return, ret);
}
#endif

/*
 * What an interval callback did with cur_seq in the starts that succeeded, where every
 * callback returned true: each flag is set once and never cleared (plain stores of 1, so
 * two CPUs setting one need no atomics, which 5.10's BPF lacks but for add).
 */
struct seq_habit {
	u32 kept;	/* it recorded cur_seq */
	u32 skipped;	/* it returned true without recording it */
};
BPF_HASH(seq_habits, u64, struct seq_habit, 1024);

static __always_inline void learn_seq(u64 fn, bool kept)
{
	struct seq_habit none = {}, *h;

	if (!fn)
		return;
	h = seq_habits.lookup_or_try_init(&fn, &none);
	if (!h)
		return;
	if (kept && !h->kept)
		h->kept = 1;
	else if (!kept && !h->skipped)
		h->skipped = 1;
}

/*
 * After a start that succeeded, walked at its return: every interval callback returned
 * true; which recorded cur_seq. subs[] one by one; the crowd beyond them by callback, as
 * having recorded it only if every subscription did (the walk does not keep which of
 * the crowd's did not, a branch its verifier budget cannot afford), and the first that
 * did not as having skipped it. Before the attribution, which adds subs[]' callbacks
 * to the crowd's tally. Loops not unrolled: one lookup in the code, not twelve.
 */
static __always_inline void learn_walk(struct interval_walk *w)
{
	u32 i;

#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_SUBS; i++) {
		if (i >= w->n)
			break;
		learn_seq(interval_fn(w->subs[masked(i, MAX_SUBS - 1)]), w->kept & (1 << i));
	}
	if (w->stale_at) {
		learn_seq(interval_fn(w->stale), false);
		return;
	}
#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_CROWD_FNS; i++) {
		if (!w->crowd.fn[masked(i, MAX_CROWD_FNS - 1)])
			break;
		learn_seq(w->crowd.fn[masked(i, MAX_CROWD_FNS - 1)], true);
	}
}

/* fn has recorded cur_seq every time it was seen returning true. */
static __always_inline bool keeps_seq(u64 fn)
{
	struct seq_habit *h = seq_habits.lookup(&fn);

	return h && h->kept && !h->skipped;
}

/*
 * A non-blockable start that failed (res), in which no callback probe counted a call (the
 * counts and lean configurations): its interval calls by the sequence check (SEQ_CHECK).
 * Returns whether that named its failure; if it shows every interval callback returned
 * true, the failure was the list pass's, and list_called says so. Otherwise (no check, a
 * callback not known to record cur_seq, another start holding some, the walk capped)
 * nothing is counted here.
 */
static __always_inline bool seq_named(void *ctx, struct core_inflight *c, u8 res)
{
	struct interval_walk *w = &c->itv;
	u64 fn, called;
	u32 i;

	if (!SEQ_CHECK || !w->seq || w->kept_after || w->capped || c->nseen)
		return false;
	if (!w->stale_at) {
		if (c->list_first)
			c->list_called = 1;
		return false;
	}
	fn = interval_fn(w->stale);
	if (!fn || !keeps_seq(fn))
		return false;
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (i + 1 >= w->stale_at)
			break;
		called = interval_fn(w->subs[i]);
		if (!called)
			continue;
		discover(called, KIND_INTERVAL);
		count_call(called, KIND_INTERVAL, c->mode, RESULT_OK, 0, false);
	}
#pragma unroll
	for (i = 0; i < MAX_CROWD_FNS; i++) {
		if (!w->lead.fn[i])
			break;
		discover(w->lead.fn[i], KIND_INTERVAL);
		count_calls(w->lead.fn[i], KIND_INTERVAL, c->mode, RESULT_OK, w->lead.n[i]);
	}
	if (w->lead.other)
		count_calls(0, KIND_INTERVAL, c->mode, RESULT_OK, w->lead.other);
	discover(fn, KIND_INTERVAL);
	count_call(fn, KIND_INTERVAL, c->mode, res, 0, false);
	core_named_failure(ctx, fn, KIND_INTERVAL, c->mode, res);
	return true;
}

/*
 * Count the interval calls of a start no probe saw. A non-blockable pass stops at the
 * first interval that fails (mn_itree_invalidate). Returns whether the list pass ran.
 */
static __always_inline bool attribute_intervals(void *ctx, struct core_inflight *c, u8 res, bool no_list,
					       bool *owned)
{
	bool stops = res != RESULT_OK && c->mode == MODE_NONBLOCKABLE && !c->list_called;
	u64 sub, fn;
	u32 i;

	/* Positions (1-based) of the last interval a probe saw pass, and of one it saw fail. */
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (i >= c->nintervals)
			break;
		sub = c->itv.subs[i];
		if (!was_seen(c, sub))
			continue;
		if (sub == c->failed_interval) {
			c->failed_at = i + 1;
			break;
		}
		c->last_seen = i + 1;
	}
	/* The unseen ones after the last seen: one of them failed, or the list pass did. */
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (i >= c->nintervals)
			break;
		if (i + 1 > c->last_seen && !was_seen(c, c->itv.subs[i])) {
			if (!c->ntail)
				c->first_tail = i + 1;
			c->ntail++;
		}
	}
	if (!stops || (!c->failed_at && !c->ntail)) {
		c->failed_at = 0;
		c->ntail = 0;
		stops = false;
	}
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (i >= c->nintervals)
			break;
		sub = c->itv.subs[i];
		if (was_seen(c, sub))
			continue;
		if (c->failed_at && i + 1 > c->failed_at)
			break;				/* not called: the pass stopped before */
		fn = interval_fn(sub);
		if (!fn)
			continue;
		discover(fn, KIND_INTERVAL);
		if (c->ntail && i + 1 == c->first_tail) {
			if (c->ntail == 1 && no_list) {
				count_call(fn, KIND_INTERVAL, c->mode, res, 0, false);
				core_named_failure(ctx, fn, KIND_INTERVAL, c->mode, res);
				*owned = true;
			} else {
				/* Surely called; whether it or a later one (or the list) failed is unknown. */
				count_call(fn, KIND_INTERVAL, c->mode, RESULT_UNOBSERVED, 0, false);
			}
			break;				/* later ones: called or not, nothing says */
		}
		count_call(fn, KIND_INTERVAL, c->mode, RESULT_OK, 0, false);
	}
	return !stops;
}

/* A list subscription's start and end callbacks, and the next subscription. */
struct list_sub {
	u64 next, start_fn, end_fn;
};

static __always_inline void read_list_sub(u64 sub, struct list_sub *l)
{
	u64 ops = 0;

	l->next = l->start_fn = l->end_fn = 0;
	READ_PAIR(l->next, F_MN_HLIST_NEXT, ops, F_MN_OPS, sub);
	if (!ops)
		return;
	/* both callbacks in one read: they are neighbours in the ops */
	READ_PAIR(l->start_fn, F_MNOPS_START, l->end_fn, F_MNOPS_END, ops);
}


/* Of fn's calls, how many (at most max) its own probes counted; those are taken. A
 * kprobe's address may lie a few bytes into its function (ftrace's call, IBT's endbr). */
static __always_inline u32 take_seen(struct tally *seen, u64 fn, u32 max)
{
	u32 i, k;

#pragma unroll
	for (i = 0; i < MAX_CROWD_FNS; i++) {
		if (seen->fn[i] - fn < 16 && seen->n[i]) {
			k = seen->n[i] < max ? seen->n[i] : max;
			seen->n[i] -= k;
			return k;
		}
	}
	return 0;
}

/*
 * A start that called more than the record follows one by one: more overlapping
 * intervals than itv.subs[] (a crowd), or more calls seen than seen[]. Counted per
 * callback: every call it made minus those the callbacks' own probes counted. Only a
 * start that succeeded says what it called (a failed non-blockable pass stops at its
 * failure): after a failure only the callbacks' own probes count, and it is lost.
 */
static __always_inline void attribute_crowd(struct core_inflight *c, int ret)
{
	struct tally *t = &c->itv.crowd;
	struct list_sub l;
	u64 sub, fn;
	u32 i, n, left;

	if (ret) {
		count_lost();
		return;
	}
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (i >= c->nintervals)
			break;
		fn = interval_fn(c->itv.subs[i]);
		if (fn)
			tally_add(t, fn);
	}
#pragma unroll
	for (i = 0; i < MAX_CROWD_FNS; i++) {
		fn = t->fn[i];
		if (!fn)
			break;
		discover(fn, KIND_INTERVAL);
		n = t->n[i] - take_seen(&c->seen_fns, fn, t->n[i]);
		if (n)
			count_calls(fn, KIND_INTERVAL, c->mode, RESULT_OK, n);
	}
	if (t->other) {
		/* Calls seen and not matched above were of these callbacks. */
		left = c->seen_fns.other;
#pragma unroll
		for (i = 0; i < MAX_CROWD_FNS; i++)
			left += c->seen_fns.n[i];
		if (left < t->other)
			count_calls(0, KIND_INTERVAL, c->mode, RESULT_OK, t->other - left);
	}
	/* The list pass, every notifier called. */
	sub = c->list_first;
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (!sub)
			break;
		read_list_sub(sub, &l);
		if (l.start_fn) {
			discover(l.start_fn, KIND_LIST);
			if (!take_seen(&c->seen_fns, l.start_fn, 1))
				count_calls(l.start_fn, KIND_LIST, c->mode, RESULT_OK, 1);
		}
		if (!i)
			c->lone_end_fn = l.end_fn;
		sub = l.next;
	}
	if (sub)
		count_lost();
	else
		c->nlist = i;
}

/*
 * At the return of a core start that returned ret: count the calls no callback probe
 * counted. Returns whether a failure of this start was given an owner.
 */
static __always_inline bool attribute_start(void *ctx, struct core_inflight *c, int ret)
{
	struct list_sub l;
	u64 first = 0, sub, cands[MAX_SUBS] = {};
	u8 res = classify_int(ret), r;
	bool failed = ret != 0, owned = false, log_live;
	struct logged_batch *logged = 0;
	u32 i, ncand = 0;

	/* Read at entry (record_intervals): the list the kernel is about to walk. */
	if (!c->subs)
		return false;
	if (SEQ_CHECK && !failed && c->itv.seq)
		learn_walk(&c->itv);
	if (failed && c->mode == MODE_NONBLOCKABLE && seq_named(ctx, c, res))
		return true;
	if (c->itv.crowd.total || c->nseen > MAX_SEEN) {
		attribute_crowd(c, ret);
		return false;
	}
	first = c->list_first;
	log_live = failed && failure_log_live();
	if (log_live) {
		/* A logged list failure: the interval pass had succeeded. None: it failed there. */
		logged = logged_here();
		if (logged)
			c->list_called = 1;
	}
	if (!attribute_intervals(ctx, c, res, !first || (log_live && !logged), &owned) || !first) {
		logged_done(logged);
		return owned;
	}

	/* The list pass (mn_hlist_invalidate_range_start): every notifier is called. */
	sub = first;
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (!sub)
			break;
		if (sub == c->sub_read) {	/* its fexit program read it (note_list_sub()) */
			l.next = c->sub_read_next;
			l.start_fn = c->sub_read_start_fn;
			l.end_fn = c->sub_read_end_fn;
		} else {
			read_list_sub(sub, &l);
		}
		if (l.start_fn && !was_seen(c, sub)) {
			discover(l.start_fn, KIND_LIST);
			if (!failed) {
				count_call(l.start_fn, KIND_LIST, c->mode, RESULT_OK, 0, false);
			} else if (logged) {
				/* The kernel logs every list failure (failure_log.bpf.c named it): a
				 * call not logged succeeded. */
				r = take_logged(logged, l.start_fn);
				count_call(l.start_fn, KIND_LIST, c->mode, r, 0, false);
				owned = true;
			} else if (ncand < MAX_SUBS) {
				cands[masked(ncand, MAX_SUBS - 1)] = l.start_fn;
				ncand++;
			}
		}
#if ENDS_IN_FAILED_START
		/* A failed list pass ends every notifier itself (c2655835fd8c). */
		if (failed && l.end_fn)
			count_end(l.end_fn);
#endif
		if (!i)
			c->lone_end_fn = l.end_fn;
		sub = l.next;
	}
	if (sub)
		count_lost();
	else
		c->nlist = i;
	logged_done(logged);
	if (ncand == 1 && !c->list_failed) {
		/* The start failed, no probe saw a failure, one notifier was not seen: its failure. */
		count_call(cands[0], KIND_LIST, c->mode, res, 0, false);
		core_named_failure(ctx, cands[0], KIND_LIST, c->mode, res);
		return true;
	}
	/* Several unseen notifiers (or a seen one failed too): each was called, outcome unknown. */
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++)
		if (i < ncand)
			count_call(cands[i], KIND_LIST, c->mode, RESULT_UNOBSERVED, 0, false);
	return owned;
}

/*
 * The list notifiers after the first MAX_SUBS of a blockable start that succeeded: each
 * with a start callback was called. Counted by callback (a tally), the rest under ip 0
 * (notifier="unattributed"): a list this long is not followed one by one, and its calls
 * are not lost.
 */
BPF_PERCPU_ARRAY(list_tally, struct tally, 1);	/* in map memory, as struct interval_walk */

static __always_inline void count_list_beyond(u64 sub, u8 mode)
{
	struct list_sub l;
	struct tally *t;
	u32 i, zero = 0;

	t = list_tally.lookup(&zero);
	if (!t)
		return;
	__builtin_memset(t, 0, sizeof(*t));
#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_WALK && sub; i++) {
		read_list_sub(sub, &l);
		if (l.start_fn)
			tally_add(t, l.start_fn);
		sub = l.next;
	}
	if (sub)
		count_lost();
#pragma unroll
	for (i = 0; i < MAX_CROWD_FNS; i++)
		if (t->fn[i])
			count_calls(t->fn[i], KIND_LIST, mode, RESULT_OK, t->n[i]);
	if (t->other)
		count_calls(0, KIND_LIST, mode, RESULT_OK, t->other);
}

#if COUNTS
/*
 * What the counts configuration knows of an mm whose list has one notifier (a KVM VM's):
 * while the list's first is still that one, the list is the same (a registration adds at
 * the head, a removal changes the first), and so are its callbacks: a start and its end
 * count them without reading the notifier again. Per CPU, in a few slots.
 */
struct list_hint {
	u64 mm, first;		/* mm's list was [first] alone */
	u64 start_fn, end_fn;	/* first's callbacks */
	/*
	 * Calls of one start callback and one end callback counted here, not in the hashes: in
	 * a record the path has found already an add costs a few instructions, a hash lookup
	 * about 160 (bench-profile). Each is the first callback this slot counted, for good, so
	 * a count never moves between maps under a reader; a hint of other callbacks counts in
	 * the hashes. User space adds them to the hashes' counts (monitor/read/readers.py).
	 * The first claim is a plain store (compare-and-swap needs 5.12's BPF atomics): two
	 * callbacks' first calls on one CPU, one preempting the other between its test and its
	 * store, would give one call to the other callback.
	 */
	u64 own_start_fn, own_end_fn;
	u64 starts, ends;
};
#define NR_HINTS	16
BPF_PERCPU_ARRAY(list_hints, struct list_hint, NR_HINTS);

/* The slot of the current process (an mm is mostly invalidated by its own threads): mm
 * itself is a BTF pointer here, on which the verifier allows no hashing. A slot holds one
 * mm's hint; another mm's there only costs its start a walk. */
static __always_inline struct list_hint *hint_of(void)
{
	u32 slot = (bpf_get_current_pid_tgid() >> 32) & (NR_HINTS - 1);

	return list_hints.lookup(&slot);
}

/* Whether the hint counted a call of its callback fn in place: own is the slot's callback
 * (the first it counted, kept for good, so a count never moves between maps and a reader
 * sees each call once), n that callback's count. Else the caller counts it in the hashes. */
static __always_inline bool hint_claim(u64 *own, u64 *n, u64 fn)
{
	if (!*own)
		*own = fn;
	if (*own != fn)
		return false;
	__sync_fetch_and_add(n, 1);
	return true;
}

/* A blockable start that succeeded: every list notifier with a start callback was called. */
static __always_inline void count_list_ok(u64 mm, u64 first)
{
	struct list_hint *h = hint_of();
	struct list_sub l;
	u64 sub = first, start_fn = 0, end_fn = 0;
	u32 i;

	if (h && h->mm == mm && h->first == first) {
		/* a blockable, successful call of the hint's start callback */
		if (h->start_fn && !hint_claim(&h->own_start_fn, &h->starts, h->start_fn))
			count_call(h->start_fn, KIND_LIST, MODE_BLOCKABLE, RESULT_OK, 0, false);
		return;
	}
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (!sub)
			break;
		read_list_sub(sub, &l);
		if (l.start_fn) {
			count_call(l.start_fn, KIND_LIST, MODE_BLOCKABLE, RESULT_OK, 0, false);
			/* for sampled latency's windows; off the hint's path, which knows its callbacks */
			discover(l.start_fn, KIND_LIST);
		}
		if (!i) {
			start_fn = l.start_fn;
			end_fn = l.end_fn;
		}
		sub = l.next;
	}
	if (sub)	/* more list notifiers than the walk follows: counted by callback */
		count_list_beyond(sub, MODE_BLOCKABLE);
	if (h) {
		h->mm = i == 1 && !sub ? mm : 0;
		h->first = first;
		h->start_fn = start_fn;
		h->end_fn = end_fn;
	}
}

#endif

/*
 * At the entry of a core end: every list notifier's invalidate_range_end is called.
 * The common case, a mm with one list notifier (a KVM VM's), costs one read: when this
 * thread's last start was on this mm and found one subscription, and the list's first is
 * still that one, the list is the same (a registration adds at the head), and so is its
 * end callback.
 */
static __always_inline void attribute_end(u64 mm, const char *subs_now)
{
	struct list_sub l;
	u64 subs, sub = 0;
	u32 i;

#if COUNTS
	/* The counts configuration keeps no record of the start: its mm's hint says the same. */
	struct list_hint *h = hint_of();

	if (h && h->mm == mm && subs_now) {
		sub = LOAD_FIELD(u64, subs_now, F_SUBS_LIST);
		if (sub && sub == h->first) {
			if (h->end_fn && !hint_claim(&h->own_end_fn, &h->ends, h->end_fn))
				count_end(h->end_fn);
			return;
		}
	}
#else
	struct core_inflight *c = core_record(false);

	if (c && c->mm == mm && c->subs && c->nlist == 1) {
#if CORE_KFUNC
		if (subs_now)	/* the mm's subscriptions by BTF (fentry): their list's first */
			sub = LOAD_FIELD(u64, subs_now, F_SUBS_LIST);
		else
#endif
			READ_FIELD(sub, c->subs, F_SUBS_LIST);
		if (sub && sub == c->list_first) {
			if (c->lone_end_fn)
				count_end(c->lone_end_fn);
			return;
		}
	}
#endif
	subs = mm_subscriptions(mm);
	if (!subs)
		return;
	READ_FIELD(sub, subs, F_SUBS_LIST);
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		if (!sub)
			return;
		read_list_sub(sub, &l);
		if (l.end_fn)
			count_end(l.end_fn);
		sub = l.next;
	}
	if (sub)
		count_lost();
}

/* The walk at mm teardown, in map memory (see struct interval_walk): one per CPU, for the
 * length of one program run. */
BPF_PERCPU_ARRAY(release_walk, struct interval_walk, 1);

/* At mm teardown: every interval notifier is called once, blockable (mn_itree_release). */
static __always_inline void attribute_release(u64 mm)
{
	u64 subs = mm_subscriptions(mm);
	struct interval_walk *w;
	struct subs_head h;
	u32 i, zero = 0;

	if (!subs)
		return;
	read_subs_head(subs, &h);
	if (!h.has_itree)
		return;
	w = release_walk.lookup(&zero);
	if (!w)
		return;
	__builtin_memset(w, 0, sizeof(*w));
	walk_intervals(h.leftmost, 0, ~0UL, w);
	if (w->capped)
		count_lost();
#pragma unroll
	for (i = 0; i < MAX_SUBS; i++) {
		u64 fn;

		if (i >= w->n)
			break;
		fn = interval_fn(w->subs[i]);
		if (!fn)
			continue;
		count_call(fn, KIND_INTERVAL, MODE_BLOCKABLE, RESULT_OK, 0, false);
		discover(fn, KIND_INTERVAL);
	}
#pragma unroll
	for (i = 0; i < MAX_CROWD_FNS; i++) {
		if (!w->crowd.fn[i])
			break;
		count_calls(w->crowd.fn[i], KIND_INTERVAL, MODE_BLOCKABLE, RESULT_OK, w->crowd.n[i]);
		discover(w->crowd.fn[i], KIND_INTERVAL);
	}
	if (w->crowd.other)
		count_calls(0, KIND_INTERVAL, MODE_BLOCKABLE, RESULT_OK, w->crowd.other);
}
#else
static __always_inline void record_intervals(struct core_inflight *c) {}
static __always_inline void record_intervals_btf(struct core_inflight *c, const struct mmu_notifier_range *range,
						 bool at_return, int ret) {}
static __always_inline bool attribute_start(void *ctx, struct core_inflight *c, int ret) { return false; }
static __always_inline void attribute_end(u64 mm, const char *subs_now) {}
static __always_inline const char *subs_btf(const struct mmu_notifier_range *range) { return 0; }
static __always_inline void attribute_release(u64 mm) {}
#endif

/* mm teardown: kprobe and fentry flavours (user space attaches one). */
#if KPROBE_TWINS
int on_notifier_release(struct pt_regs *ctx)
{
	attribute_release(PT_REGS_PARM1(ctx));
	return 0;
}
#endif

#if CORE_KFUNC
KFUNC_PROBE(__mmu_notifier_release, struct mm_struct *mm)
{
	attribute_release((u64)mm);
	return 0;
}
#endif
