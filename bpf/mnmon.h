/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The contract between mnmon's BPF programs and its Python side: every constant,
 * index and record both sides read. monitor/read/contract.py takes them from this file
 * (names, values, struct layouts); tests/unit/test_contract.py compiles it with gcc
 * and fails when the two disagree. A new result, kind or event is an edit here.
 *
 * Rules that keep it readable by that parser: one `#define NAME number` per line;
 * enumerations are families of one prefix (MODE_, RESULT_, ...) whose names, lower
 * cased without the prefix, are what the metrics' labels say; struct fields are
 * `type name;` or `type name[SIZE];` with SIZE a number, a NAME or NAME * NAME.
 */
#ifndef MNMON_H
#define MNMON_H

/* Label values, by family: the index is the value. */
#define MODE_BLOCKABLE		0
#define MODE_NONBLOCKABLE	1
#define NR_MODES		2

#define RESULT_OK		0
#define RESULT_EAGAIN		1	/* the notifier would have blocked */
#define RESULT_ERROR		2	/* any other failure */
#define RESULT_UNOBSERVED	3	/* called, outcome not observable (see notifiers.bpf.c) */
#define NR_RESULTS		4

#define KIND_LIST		0	/* mmu_notifier_ops.invalidate_range_start */
#define KIND_INTERVAL		1	/* mmu_interval_notifier_ops.invalidate (or invalidate_start) */
#define KIND_LIST_END		2	/* mmu_notifier_ops.invalidate_range_end */
#define NR_KINDS		3

/* How a callback became known to mnmon (user space adds FOUND_BTF from BTF scans). */
#define FOUND_BTF		0	/* by prototype in vmlinux or module BTF */
#define FOUND_REGISTRATION	1	/* __mmu_notifier_register / mmu_interval_notifier_insert */
#define FOUND_INVALIDATION	2	/* in an mm's subscriptions, walked by the core probes */

#define REAP_REAPED		0
#define REAP_NOTIFIER_BLOCKED	1
#define REAP_SKIPPED		2
#define NR_REAP_RESULTS		3

#define CALLER_OOM_REAPER	0
#define CALLER_PROCESS_MRELEASE	1
#define CALLER_EXIT_MMAP	2
#define NR_CALLERS		3

/* Rare events for `mnmon watch`: they go through a ring (or perf) buffer. */
#define EV_NOTIFIER_FAILED	1	/* a non-blockable notifier callback failed */
#define EV_OOM_VICTIM		2
#define EV_REAP_ATTEMPT		3
#define EV_REAPER_GAVE_UP	4
#define EV_UNPAIRED_START	5	/* a notifier's start succeeded, its end was skipped */
/* A victim chosen while a given-up victim's mm was held: pid and comm the new victim,
 * first_pid and first_comm the earlier one, duration_ns how long its mm had been held
 * (since its choice), ip the notifier that blocked its reap. */
#define EV_PREMATURE_VICTIM	6

/*
 * fentry programs on notifier callbacks are loaded once per callback, and the callback's
 * address is written into each loaded copy in place of this constant (a 64-bit immediate:
 * monitor/attach/module_fentry.py). Older kernels have no bpf_get_func_ip() (5.15), and a
 * constant costs nothing at run time.
 */
#define CB_IP_PLACEHOLDER	0x6d6e6d6f6e2d6970	/* "mnmon-ip" */

/* Sizes. */
#define NR_EVENTS_TYPES		16	/* enum mmu_notifier_event has 8 values up to 7.x */
#define NR_LAT_SLOTS		64	/* log2(ns) */
#define MAX_BLOCKERS		4	/* distinct notifiers named per failed reap attempt */
#define MAX_STARTED		8	/* list notifiers tracked for pairing per start */
#define MAX_SUBS		8	/* subscriptions of one mm walked per invalidation */
#define MAX_SEEN		8	/* callbacks whose own probes counted them, per invalidation */
/* Interval tree nodes the walk visits per invalidation: a bounded loop, since bcc 0.26
 * cannot pass bpf_loop() a callback (its address is not relocated: "R2 type=scalar
 * expected=func"). Overlapping intervals beyond MAX_SUBS are counted per callback. */
#define MAX_WALK		256
#define MAX_CROWD_FNS		4	/* callbacks counted apart in such a crowd; the rest: unattributed */
#define NR_MRELEASE_TEXT	4	/* process_mrelease's syscall functions (per-arch wrappers) */
#define MAX_CALLER_FRAMES	12	/* frames searched for them above __oom_reap_task_mm */
#define MAX_HELD		8	/* given-up victims' mms followed to their teardown at once */

struct mnmon_event {
	unsigned long long ts_ns;	/* bpf_ktime_get_ns() */
	unsigned long long ip;		/* notifier callback (EV_NOTIFIER_FAILED, blocker of EV_REAP_ATTEMPT) */
	unsigned long long duration_ns;
	unsigned long long rss_kb;	/* EV_OOM_VICTIM, where the tracepoint carries it */
	unsigned int type;
	unsigned int pid;		/* victim pid for OOM events, else the caller's tgid */
	unsigned int tid;
	int result;			/* REAP_* for attempts; RESULT_* for notifiers */
	unsigned int caller;		/* CALLER_* for reap attempts; MODE_* for notifier events */
	unsigned int kind;		/* KIND_* for notifier events */
	char comm[16];
	unsigned long long domain;	/* EV_PREMATURE_VICTIM: memcg's cgroup id; 0: the machine */
	unsigned int first_pid;		/* the earlier victim whose mm was held */
	unsigned int pad;
	char first_comm[16];
};

/*
 * Every count of the core probes in one per-CPU record: one lookup per probe hit
 * instead of one per counter. Indexes are masked in the BPF code (see masked()):
 * each [mode][result] array is followed by more entries of the record.
 */
struct core_stats {
	unsigned long long invalidate_starts[NR_MODES * NR_RESULTS];		/* [mode][result] */
	unsigned long long unattributed_failures[NR_MODES * NR_RESULTS];	/* failed, no notifier named */
	unsigned long long invalidations_by_event[NR_EVENTS_TYPES];
	unsigned long long invalidate_start_latency[NR_MODES * NR_LAT_SLOTS];	/* [mode][log2 ns] */
	unsigned long long invalidate_start_latency_sum_ns[NR_MODES];
	unsigned long long invalidate_ends[1];
	unsigned long long unpaired_starts[1];
};

/* A notifier's calls: keyed by its callback's address, kind, mode and result. */
struct notifier_key {
	unsigned long long ip;
	unsigned char kind;
	unsigned char mode;
	unsigned char result;
	unsigned char pad[5];
};

/* Calls and their time together: one lookup for both. Calls whose time could not be
 * measured (counted by the core probes, see notifiers.bpf.c) add nothing to sum_ns. */
struct notifier_calls {
	unsigned long long count;
	unsigned long long sum_ns;
};

struct notifier_lat_key {
	unsigned long long ip;
	unsigned char mode;
	unsigned char slot;
	unsigned char pad[6];
};

/* An OOM victim's cgroup by name, for when its directory is gone before user space looks. */
struct cgroup_name {
	char leaf[64];
	char parent[64];
};

/* Where a function's code lies (process_mrelease's syscall functions). */
struct text_range {
	unsigned long long lo;
	unsigned long long hi;
};

#endif
