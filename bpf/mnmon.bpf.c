// SPDX-License-Identifier: GPL-2.0
/*
 * mnmon's BPF side, one compile unit (bcc compiles once at start: one compile,
 * not three, is what start-up time can afford). Each concern is a file of its own:
 *
 *   invalidate.bpf.c  __mmu_notifier_invalidate_range_start/_end: counts, latency,
 *                     sections in progress
 *   notifiers.bpf.c   each notifier's callbacks: outcome, latency, start/end pairing;
 *                     discovery of callbacks at registration
 *   oom.bpf.c         the OOM reaper: victims, attempts, who blocked them, give-ups
 *   premature.bpf.c   victims chosen while a given-up victim's mm is held (exit_mmap)
 *
 * Knobs, chosen per kernel by monitor/plan/attach_plan.py and passed as -D cflags:
 *   MN_API        the kernel's notifier API generation (see KERNEL_NOTES):
 *                 419: blockable is an argument (4.19-4.20)
 *                 500: range->blockable (5.0-5.1)
 *                 502: range->flags & MMU_NOTIFIER_RANGE_BLOCKABLE (5.2+)
 *                 505: interval notifiers exist (5.5+)
 *   CORE_KFUNC    1: fentry/fexit on the core entry points (BTF + trampolines)
 *   LEAN          1: the lean configuration: one fexit on the core start, nothing else on
 *                 the invalidation path (invalidate.bpf.c; needs CORE_KFUNC, MN_API >= 502)
 *   COUNTS        1: the counts configuration (latency off): an fexit on the core start and
 *                 an fentry on its end count everything but time (invalidate.bpf.c)
 *   FAILURE_LOG   1: failed list notifiers named from the kernel's log line, by an fentry
 *                 on vprintk_emit (failure_log.bpf.c; lean and counts, x86-64)
 *   CB_KFUNC      1: fentry/fexit programs for notifier callbacks, loaded per callback
 *                 against its module's BTF (notifiers.bpf.c, monitor/attach/module_fentry.py)
 *   REAP_KFUNC    1: fentry/fexit on __oom_reap_task_mm
 *   KPROBE_TWINS  1: the kprobe flavour of the probes that also have an fentry one (core
 *                 start/end, mm teardown, the reaper); 0 where all of them prefer fentry:
 *                 the flavour not attached would double the compile
 *   USE_RINGBUF   1: BPF ring buffer (5.8+), else a perf buffer
 *   TASK_STORAGE  1: a thread's in-flight invalidation lives in task-local storage
 *                 (tracing programs may use it since 5.12), else in a hash keyed by tid
 *   HAVE_STRUCTS  0: no layout of the running kernel's structs (no BTF, and headers that
 *                 are not its own): nothing here may read a kernel struct, only
 *                 tracepoint records are safe
 *   BTF_LAYOUT    1: every struct field's offset comes from the running kernel's BTF as
 *                 F_* flags (fields.h), whatever headers bcc compiles against
 *   MN_SUBS       1: the core probes walk the mm's subscriptions (5.6+: struct
 *                 mmu_notifier_subscriptions, private: its layout only from BTF)
 *   CGROUP_FIELDS 1: a task's cgroup can be read (else the current task's cgroup id)
 *   ENDS_IN_FAILED_START 1: a failed non-blockable start ends the list notifiers
 *                 itself (c2655835fd8c, 5.12; in 5.10.y)
 *   MV_ANON_RSS_OFF, MV_FILE_RSS_OFF, MV_SHMEM_RSS_OFF: offsets of oom:mark_victim's
 *                 rss fields where the tracepoint has them (6.9+), from its format file
 *   MV_COMM_LOC_OFF: offset of its __data_loc comm field, likewise
 *   MV_TASK_ARG   1: oom:mark_victim passes the victim's task (72ba14deb40a): its cgroup
 *                 is read from it by a raw tracepoint program
 *   PREMATURE     1: premature victims are followed (out_of_memory's memcg and exit_mmap
 *                 can be probed and read: premature.bpf.c)
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#if HAVE_STRUCTS || CGROUP_FIELDS
#include <linux/mm_types.h>
#include <linux/mmu_notifier.h>
#include <linux/cgroup-defs.h>
#include <linux/kernfs.h>
#endif
#include "mnmon.h"
#include "fields.h"

#ifndef MN_API
#define MN_API 502
#endif
#ifndef LEAN
#define LEAN 0
#endif
#ifndef COUNTS
#define COUNTS 0
#endif
/* probes.latency: always: the counts configuration times the core start too (invalidate.bpf.c) */
#ifndef TIME_START
#define TIME_START 0
#endif
#ifndef KPROBE_TWINS
#define KPROBE_TWINS 1
#endif
#ifndef CB_KFUNC
#define CB_KFUNC 0
#endif

/* ------------------------------------------------------------- shared */
BPF_PERCPU_ARRAY(events_lost, u64, 1);

/* A notifier callback in flight on a thread. */
struct cb_inflight {
	u64 ts;
	u64 ip;		/* 0: none */
	u64 sub;	/* struct mmu_notifier * or struct mmu_interval_notifier * */
	u8 mode;
};

/*
 * Calls counted per callback rather than per subscription: the overlapping intervals
 * beyond intervals[] (a crowd: a GPU driver's one per userptr buffer), and the calls
 * the callbacks' own probes counted (attribute.bpf.c, attribute_crowd()).
 */
struct tally {
	u64 fn[MAX_CROWD_FNS];
	u32 n[MAX_CROWD_FNS];
	u32 other;		/* calls of callbacks beyond fn[] */
	u32 total;
};

/*
 * What a walk of an mm's interval tree found (attribute.bpf.c, walk_intervals()). Kept in
 * map memory, not in registers: values the verifier cannot know let its states prune
 * across the loop's iterations and exits, where known ones multiply them.
 */
struct interval_walk {
	u64 subs[MAX_SUBS];	/* the first overlapping subscriptions, in the kernel's order */
	struct tally crowd;	/* the ones beyond subs[], by callback */
	u32 n;			/* how many overlap */
	u8 capped;		/* the walk stopped at MAX_WALK nodes with more to go */
	/*
	 * The sequence check (attribute.bpf.c, walk at a start's return only): seq is the
	 * start's cur_seq, 0 when the walk made no check. An interval callback that returns
	 * true records it (mmu_interval_set_seq()).
	 */
	u8 kept;		/* bit i: subs[i] holds seq */
	u32 stale_at;		/* 1-based position of the first that does not; 0: none */
	u32 kept_after;		/* ones after it that hold seq */
	u64 seq;
	u64 stale;		/* the subscription at stale_at */
	struct tally lead;	/* the ones beyond subs[] before stale_at, by callback */
};

/*
 * A core invalidate_range_start in flight on a thread (notifier callbacks run inside
 * it), and what the core probes need to count, at its return, the calls that no
 * callback probe saw (notifiers.bpf.c, attribute_start()).
 */
struct core_inflight {
	u64 ts;				/* 0: no start in flight */
	u64 mm, start, end;		/* the range: its mm, [start, end) */
	struct cb_inflight cb;		/* the callback running inside it, if any */
	u64 started[MAX_STARTED];	/* list subscriptions whose start succeeded and await an end */
	u64 seen[MAX_SEEN];		/* subscriptions whose own probes counted this call */
	u64 failed_interval;		/* a probed interval callback that failed here */
	struct interval_walk itv;	/* overlapping interval subscriptions */
	struct tally seen_fns;		/* the calls in seen[], and any beyond it, by callback */
	/* Read at entry, for the return not to read them again (attribute.bpf.c): the mm's
	 * struct mmu_notifier_subscriptions and its list's first subscription. */
	u64 subs, list_first;
	/* The list's only subscription's invalidate_range_end, when the start's return found
	 * exactly one (nlist == 1): its end counts it without walking again (attribute_end()). */
	u64 lone_end_fn;
	/* A list subscription whose fexit program saw it here, and what the start's return
	 * would read of it (next, callbacks): read there by BTF, where they cost a load each
	 * (attribute_start()). sub_read == 0: none. */
	u64 sub_read, sub_read_next, sub_read_start_fn, sub_read_end_fn;
	u8 nlist;
	u8 nintervals;
	/* Working state of attribute_intervals(), kept here rather than in registers: values
	 * the verifier cannot know make its states prune, where known ones multiply them. */
	u8 last_seen, failed_at, first_tail, ntail;
	u8 mode;
	u8 event;
	u8 nstarted;
	u8 nseen;
	u8 list_called;			/* a probed list callback ran: the interval pass succeeded */
	u8 list_failed;			/* a probed list callback failed */
	u8 failure_attributed;		/* a failure of this start has an owner */
	/* probes.latency: always: when the core start's entry ran (invalidate.bpf.c, TIME_START).
	 * Apart from ts: the counts fexit clears the record (core_begin()) after reading it. */
	u64 start_ts;
};

/* An __oom_reap_task_mm call in flight: the notifiers that failed inside it. */
struct reap_inflight {
	u64 ts;
	u64 blockers[MAX_BLOCKERS];
	u32 victim;
	u8 caller;
	u8 nblockers;
};
BPF_HASH(reap_inflight, u32, struct reap_inflight, 256);


#if USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, 64);
#else
BPF_PERF_OUTPUT(events);
#endif

static __always_inline void count_lost(void)
{
	u32 zero = 0;
	u64 *lost = events_lost.lookup(&zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

static __always_inline void emit(void *ctx, struct mnmon_event *e)
{
	int err;

	e->ts_ns = bpf_ktime_get_ns();
#if USE_RINGBUF
	err = events.ringbuf_output(e, sizeof(*e), 0);
#else
	err = events.perf_submit(ctx, e, sizeof(*e));
#endif
	if (err)
		count_lost();
}

/* Slot s of a latency histogram holds [2^s, 2^(s+1)) ns. bcc's bpf_log2l() is
 * floor(log2) + 1 (its slot 0 is the value 0), hence the - 1. */
static __always_inline u32 log2_slot(u64 ns)
{
	u32 slot = ns ? bpf_log2l(ns) - 1 : 0;

	return slot < NR_LAT_SLOTS ? slot : NR_LAT_SLOTS - 1;
}

/*
 * idx & mask, for the verifier: every index here is in range already, but the
 * compiler drops a clamp it can prove redundant (or checks a zero-extended copy),
 * which leaves the verifier an unbounded access. It cannot see through the asm.
 */
_Static_assert(!(NR_MODES * NR_RESULTS & (NR_MODES * NR_RESULTS - 1)), "masked() needs a power of two");
_Static_assert(!(MAX_SUBS & (MAX_SUBS - 1)) && !(MAX_SEEN & (MAX_SEEN - 1)), "masked() needs a power of two");

static __always_inline u64 masked(u64 idx, u64 mask)
{
	asm volatile("" : "+r"(idx));
	return idx & mask;
}

static __always_inline u32 tid(void)
{
	return (u32)bpf_get_current_pid_tgid();
}

#if HAVE_STRUCTS
/* The range as the core start sees it: one read of the kernel's struct (5.0+). */
struct range_facts {
	u64 mm, start, end;
	u8 mode, event;
};

#if MN_API >= 502
#define RANGE_SPAN	MAX2(SPAN3(F_RANGE_MM, F_RANGE_START, F_RANGE_END), MAX2(F_RANGE_FLAGS, F_RANGE_EVENT) + 4)
#else
#define RANGE_SPAN	MAX2(SPAN3(F_RANGE_MM, F_RANGE_START, F_RANGE_END), F_RANGE_BLOCKABLE + 1)
#endif

static __always_inline u8 event_index(u32 event)
{
	return event < NR_EVENTS_TYPES ? event : NR_EVENTS_TYPES - 1;
}

static __always_inline void read_range(const struct mmu_notifier_range *range, struct range_facts *f)
{
	u64 raw[(RANGE_SPAN + 7) / 8] = {};

	bpf_probe_read_kernel(raw, sizeof(raw), range);
	RAW_FIELD(f->mm, raw, F_RANGE_MM);
	RAW_FIELD(f->start, raw, F_RANGE_START);
	RAW_FIELD(f->end, raw, F_RANGE_END);
#if MN_API >= 502
	{
		u32 flags, event;

		RAW_FIELD(flags, raw, F_RANGE_FLAGS);
		RAW_FIELD(event, raw, F_RANGE_EVENT);
		f->mode = (flags & RANGE_BLOCKABLE) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
		f->event = event_index(event);
	}
#elif MN_API >= 500
	{
		u8 blockable;

		RAW_FIELD(blockable, raw, F_RANGE_BLOCKABLE);
		f->mode = blockable ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
		f->event = 0;
	}
#endif
}

/* Blockability of a range, for callbacks (5.0+). */
static __always_inline u8 range_mode(const struct mmu_notifier_range *range)
{
#if MN_API >= 502
	u32 flags = 0;

	READ_FIELD(flags, range, F_RANGE_FLAGS);
	return (flags & RANGE_BLOCKABLE) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
#else
	u8 blockable = 0;

	READ_FIELD(blockable, range, F_RANGE_BLOCKABLE);
	return blockable ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
#endif
}

#if CORE_KFUNC || CB_KFUNC
/*
 * fentry/fexit programs get the kernel's pointers typed by BTF: a field is read by a
 * plain load that the verifier checks against BTF (a faulting load reads 0), not by a
 * bpf_probe_read_kernel() call, which costs about a hundred instructions
 * (copy_from_kernel_nofault; bench/profile.py). The kprobe flavour reads the same
 * fields with the helper. The pointer must come from the program's arguments, field by
 * field: one loaded from a map is a plain number to the verifier.
 */
static __always_inline void read_range_btf(const struct mmu_notifier_range *range, struct range_facts *f)
{
	f->mm = LOAD_FIELD(u64, range, F_RANGE_MM);
	f->start = LOAD_FIELD(u64, range, F_RANGE_START);
	f->end = LOAD_FIELD(u64, range, F_RANGE_END);
	f->mode = (LOAD_FIELD(u32, range, F_RANGE_FLAGS) & RANGE_BLOCKABLE) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
	f->event = event_index(LOAD_FIELD(u32, range, F_RANGE_EVENT));
}

static __always_inline u8 range_mode_btf(const struct mmu_notifier_range *range)
{
	return (LOAD_FIELD(u32, range, F_RANGE_FLAGS) & RANGE_BLOCKABLE) ? MODE_BLOCKABLE : MODE_NONBLOCKABLE;
}
#endif

static __always_inline u8 classify_int(int ret)
{
	return ret == 0 ? RESULT_OK : ret == -11 /* -EAGAIN */ ? RESULT_EAGAIN : RESULT_ERROR;
}

/*
 * The core start in flight on this thread. core_begin() at its entry, core_current()
 * inside it and at its return, core_finish() then. A record that cannot be stored
 * (map full, storage busy) or found again is counted as lost: the start goes uncounted.
 * User space attaches the return program before the entry (probes.attach_order).
 */
#if TASK_STORAGE
/*
 * Created once per thread and freed with it: a lookup through the task instead of a
 * hash insert and delete per invalidation, the hot spot of the invalidation path.
 * ts == 0: no start in flight.
 */
BPF_TASK_STORAGE(core_inflight, struct core_inflight);

/* This thread's record, whether a start is in flight or not (create: make one). */
static __always_inline struct core_inflight *core_record(bool create)
{
	return core_inflight.task_storage_get(bpf_get_current_task_btf(), 0,
					      create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

static __always_inline void core_finish(struct core_inflight *c)
{
	c->ts = 0;
}
#else

/*
 * One record per thread, written in place: a hash update per start would copy the
 * whole record from the stack, where it does not fit. LRU: threads that exited
 * leave their records behind, and the least recently used go first.
 */
BPF_TABLE("lru_hash", u32, struct core_inflight, core_inflight, 10240);
BPF_ARRAY(core_zero, struct core_inflight, 1);

static __always_inline struct core_inflight *core_record(bool create)
{
	u32 t = tid(), zero = 0;
	struct core_inflight *c = core_inflight.lookup(&t), *z;

	if (c || !create)
		return c;
	z = core_zero.lookup(&zero);
	if (!z || core_inflight.update(&t, z))
		return 0;
	return core_inflight.lookup(&t);
}

/* The record stays with the thread (the map is sized for threads that invalidate):
 * a delete per start would make every start an insert. */
static __always_inline void core_finish(struct core_inflight *c)
{
	c->ts = 0;
}
#endif

static __always_inline struct core_inflight *core_begin(struct range_facts *f)
{
	struct core_inflight *c = core_record(true);

	if (!c) {
		count_lost();
		return 0;
	}
	/*
	 * The previous start's return found no record (before 6.2 a task storage lookup
	 * fails while another task storage operation holds this CPU): it went uncounted.
	 */
	if (c->ts)
		count_lost();
	__builtin_memset(c, 0, sizeof(*c));
	c->ts = bpf_ktime_get_ns();
	c->mm = f->mm;
	c->start = f->start;
	c->end = f->end;
	c->mode = f->mode;
	c->event = f->event;
	return c;
}

static __always_inline struct core_inflight *core_current(void)
{
	struct core_inflight *c = core_record(false);

	return c && c->ts ? c : 0;
}

#include "notifiers.bpf.c"
#include "failure_log.bpf.c"
#include "attribute.bpf.c"
#include "invalidate.bpf.c"
#endif /* HAVE_STRUCTS */

#ifndef PREMATURE
#define PREMATURE 0
#endif
#include "premature.bpf.c"
#include "oom.bpf.c"
