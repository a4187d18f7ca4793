/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Constants and the event record shared by the BPF programs and mnmon's Python
 * side (monitor/events.py mirrors struct mnmon_event; a unit test compiles this
 * header and checks the layout).
 */
#ifndef MNMON_H
#define MNMON_H

#define MODE_BLOCKABLE		0
#define MODE_NONBLOCKABLE	1
#define NR_MODES		2

#define RESULT_OK		0
#define RESULT_EAGAIN		1	/* the notifier would have blocked */
#define RESULT_ERROR		2	/* any other failure */
#define NR_RESULTS		3

#define KIND_LIST		0	/* mmu_notifier_ops.invalidate_range_start */
#define KIND_INTERVAL		1	/* mmu_interval_notifier_ops.invalidate */
#define KIND_LIST_END		2	/* mmu_notifier_ops.invalidate_range_end */

#define REAP_REAPED		0
#define REAP_NOTIFIER_BLOCKED	1
#define REAP_SKIPPED		2
#define NR_REAP_RESULTS		3

#define CALLER_OOM_REAPER	0
#define CALLER_PROCESS_MRELEASE	1
#define CALLER_EXIT_MMAP	2
#define NR_CALLERS		3

#define NR_EVENTS_TYPES		16	/* enum mmu_notifier_event has 8 values up to 7.x */
#define NR_LAT_SLOTS		64	/* log2(ns) */
#define MAX_BLOCKERS		4	/* distinct notifiers named per failed reap attempt */
#define MAX_STARTED		8	/* list notifiers tracked for pairing per start */
#define NR_MRELEASE_TEXT	4	/* process_mrelease's syscall functions (per-arch wrappers) */
#define MAX_CALLER_FRAMES	12	/* frames searched for them above __oom_reap_task_mm */

/* Rare events for `mnmon watch`: they go through a ring (or perf) buffer. */
#define EV_NOTIFIER_FAILED	1	/* a non-blockable notifier callback failed */
#define EV_OOM_VICTIM		2
#define EV_REAP_ATTEMPT		3
#define EV_REAPER_GAVE_UP	4
#define EV_UNPAIRED_START	5	/* a notifier's start succeeded, its end was skipped */

struct mnmon_event {
	unsigned long long ts_ns;	/* bpf_ktime_get_ns() */
	unsigned long long ip;		/* notifier callback (EV_NOTIFIER_FAILED, blocker of EV_REAP_ATTEMPT) */
	unsigned long long duration_ns;
	unsigned long long rss_kb;	/* EV_OOM_VICTIM, where the tracepoint carries it */
	unsigned int type;
	unsigned int pid;		/* victim pid for OOM events, else the caller's tgid */
	unsigned int tid;
	int result;			/* REAP_* for attempts; RESULT_* for notifiers */
	unsigned int caller;		/* CALLER_* for reap attempts */
	unsigned int kind;		/* KIND_* for notifier events */
	char comm[16];
};

#endif
