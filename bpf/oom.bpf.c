// SPDX-License-Identifier: GPL-2.0
/*
 * The OOM reaper: victims (oom:mark_victim), attempts by result, who ran them,
 * which notifiers made them fail, give-ups. Tracepoint programs here read only
 * their records, so they stay safe when the headers do not match the kernel.
 * Included by mnmon.bpf.c.
 */
#define MAX_OOM_REAP_RETRIES 10		/* mm/oom_kill.c, unchanged since 4.6 */

BPF_PERCPU_ARRAY(oom_victims, u64, 1);
BPF_PERCPU_ARRAY(oom_reap_attempts, u64, NR_REAP_RESULTS);
BPF_PERCPU_ARRAY(oom_reap_calls, u64, NR_CALLERS * NR_REAP_RESULTS);	/* [caller][result] */
BPF_PERCPU_ARRAY(oom_reaper_gave_up, u64, 1);
BPF_PERCPU_HASH(oom_reap_blocked, u64, u64, 1024);	/* callback address; 0: unknown */
BPF_PERCPU_ARRAY(oom_reap_latency, u64, NR_LAT_SLOTS);
BPF_PERCPU_ARRAY(oom_reap_latency_sum_ns, u64, 1);

BPF_HASH(reaper_victim, u32, u32, 64);		/* reaper thread -> victim pid it works on */
/*
 * The text of process_mrelease's syscall functions, from kallsyms (user space fills it):
 * a reap with a return address in there is process_mrelease's. The syscall tracepoints
 * would tell too, but enabled they send every syscall of every task down the slow path.
 */
BPF_ARRAY(mrelease_text, struct text_range, NR_MRELEASE_TEXT);
BPF_TABLE("lru_hash", u32, u32, victim_attempts, 1024);	/* victim pid -> attempts seen */
/*
 * Victims by cgroup (v2 id = the cgroup directory's inode): a bounded family, the cgroups
 * with the most recent victims. victim_cgroup names each victim's cgroup for events.
 */
BPF_TABLE("lru_hash", u64, u64, oom_victims_by_cgroup, 64);
BPF_TABLE("lru_hash", u32, u64, victim_cgroup, 1024);
BPF_TABLE("lru_hash", u64, struct cgroup_name, cgroup_names, 64);

static __always_inline void victim_in_cgroup(u32 pid, u64 cgroup)
{
	u64 one = 1, *n = oom_victims_by_cgroup.lookup(&cgroup);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		oom_victims_by_cgroup.update(&cgroup, &one);
	victim_cgroup.update(&pid, &cgroup);
}

/* The records of oom:* tracepoints: common fields (8 bytes), then int pid. */
struct oom_pid_record {
	u64 common;
	int pid;
};

static __always_inline bool is_oom_reaper(void)
{
	char comm[16] = {};

	bpf_get_current_comm(&comm, sizeof(comm));
	return comm[0] == 'o' && comm[1] == 'o' && comm[2] == 'm' && comm[3] == '_' &&
	       comm[4] == 'r' && comm[5] == 'e' && comm[6] == 'a' && comm[7] == 'p' &&
	       comm[8] == 'e' && comm[9] == 'r' && comm[10] == 0;
}

static __always_inline void gave_up(void *ctx, u32 pid)
{
	struct mnmon_event e = {};
	u32 zero = 0;

	oom_reaper_gave_up.atomic_increment(zero);
#if PREMATURE
	premature_on_gave_up(pid);
#endif
	e.type = EV_REAPER_GAVE_UP;
	e.pid = pid;
	e.tid = tid();
	emit(ctx, &e);
}

/* Attempts per victim; without a probe on sched_show_task the tenth marks a give-up. */
static __always_inline void count_attempt(void *ctx, u32 pid)
{
	u32 one = 1, *n = victim_attempts.lookup(&pid);

	if (!n) {
		victim_attempts.update(&pid, &one);
		n = &one;
	} else {
		__sync_fetch_and_add(n, 1);
	}
#if !GAVE_UP_PROBE
	if (*n == MAX_OOM_REAP_RETRIES)
		gave_up(ctx, pid);
#endif
}

#if CGROUP_FIELDS
/* A task's cgroup (v2) id, and its name and its parent's: a killed container's cgroup is
 * often removed before user space looks it up. */
static __always_inline u64 cgroup_of_task(u64 task)
{
	struct cgroup_name names = {};
	u64 cset = 0, cgrp = 0, kn = 0, up = 0, name = 0, id = 0;

	READ_FIELD(cset, task, F_TASK_CGROUPS);
	if (cset)
		READ_FIELD(cgrp, cset, F_CSET_DFL_CGRP);
	if (cgrp)
		READ_FIELD(kn, cgrp, F_CGRP_KN);
	if (!kn)
		return 0;
	READ_FIELD(id, kn, F_KN_ID);
	READ_FIELD(name, kn, F_KN_NAME);
	bpf_probe_read_kernel_str(&names.leaf, sizeof(names.leaf), (void *)name);
	READ_FIELD(up, kn, F_KN_PARENT);
	if (up) {
		READ_FIELD(name, up, F_KN_NAME);
		bpf_probe_read_kernel_str(&names.parent, sizeof(names.parent), (void *)name);
	}
	cgroup_names.update(&id, &names);
	return id;
}
#endif

int on_mark_victim(struct oom_pid_record *args)
{
	struct mnmon_event e = {};
	u32 zero = 0;

	oom_victims.atomic_increment(zero);
#if !MV_TASK_ARG
	/* No victim task to read: the cgroup of the task that ran into the limit, for a memcg
	 * OOM the cgroup whose limit it was (or one below it). */
#if CGROUP_FIELDS
	victim_in_cgroup(args->pid, cgroup_of_task(bpf_get_current_task()));
#else
	victim_in_cgroup(args->pid, bpf_get_current_cgroup_id());
#endif
#endif
	e.type = EV_OOM_VICTIM;
	e.pid = args->pid;
	e.tid = tid();
#ifdef MV_ANON_RSS_OFF	/* 6.9+: rss in kB in the record */
	{
		unsigned long anon = 0, file = 0, shmem = 0;

		bpf_probe_read_kernel(&anon, sizeof(anon), (void *)args + MV_ANON_RSS_OFF);
		bpf_probe_read_kernel(&file, sizeof(file), (void *)args + MV_FILE_RSS_OFF);
		bpf_probe_read_kernel(&shmem, sizeof(shmem), (void *)args + MV_SHMEM_RSS_OFF);
		e.rss_kb = anon + file + shmem;
	}
#endif
#ifdef MV_COMM_LOC_OFF	/* __data_loc: offset in the low 16 bits, length in the high */
	{
		u32 loc = 0;

		bpf_probe_read_kernel(&loc, sizeof(loc), (void *)args + MV_COMM_LOC_OFF);
		bpf_probe_read_kernel_str(&e.comm, sizeof(e.comm), (void *)args + (loc & 0xffff));
	}
#endif
#if PREMATURE
	premature_on_victim(args, args->pid, e.comm);
#endif
	emit(args, &e);
	return 0;
}

#if MV_TASK_ARG
/*
 * oom:mark_victim's arguments since 72ba14deb40a (6.9; in 5.4, 5.15, 6.1 and 6.6 stables):
 * (struct task_struct *task, uid_t uid). The victim's own cgroup, from its task.
 */
int on_mark_victim_task(struct bpf_raw_tracepoint_args *ctx)
{
	u64 task = ctx->args[0];
	u32 pid = 0;

	READ_FIELD(pid, task, F_TASK_PID);
	victim_in_cgroup(pid, cgroup_of_task(task));
	return 0;
}
#endif

int on_start_task_reaping(struct oom_pid_record *args)
{
	u32 t = tid(), pid = args->pid;

	reaper_victim.update(&t, &pid);
	count_attempt(args, pid);
	return 0;
}

/* mmap lock contended, or the mm already reaped/exiting: the reaper retries or stops. */
int on_skip_task_reaping(struct oom_pid_record *args)
{
	struct mnmon_event e = {};
	u32 idx = REAP_SKIPPED;

	oom_reap_attempts.atomic_increment(idx);
	count_attempt(args, args->pid);
	e.type = EV_REAP_ATTEMPT;
	e.pid = args->pid;
	e.tid = tid();
	e.result = REAP_SKIPPED;
	emit(args, &e);
	return 0;
}

/* Off the hot path: reaps are rare, so walking a few frames costs nothing that matters. */
static __always_inline bool called_from_mrelease(void *ctx)
{
	u64 stack[MAX_CALLER_FRAMES] = {};
	struct text_range *r;
	u32 i, j;

	if (bpf_get_stack(ctx, stack, sizeof(stack), 0) <= 0)
		return false;
#pragma unroll
	for (j = 0; j < NR_MRELEASE_TEXT; j++) {
		u32 k = j;

		r = mrelease_text.lookup(&k);
		if (!r || !r->hi)
			continue;
#pragma unroll
		for (i = 0; i < MAX_CALLER_FRAMES; i++)
			if (stack[i] >= r->lo && stack[i] < r->hi)
				return true;
	}
	return false;
}

static __always_inline void reap_enter(void *ctx, u64 mm)
{
	struct reap_inflight r = {};
	u32 t = tid(), *victim;

	r.ts = bpf_ktime_get_ns();
	if (is_oom_reaper()) {
		r.caller = CALLER_OOM_REAPER;
		victim = reaper_victim.lookup(&t);
		if (victim)
			r.victim = *victim;
#if PREMATURE
		premature_on_reap(r.victim, mm);
#endif
	} else {
		/* process_mrelease() since 5.15; exit_mmap() called it up to 6.0 */
		r.caller = called_from_mrelease(ctx) ? CALLER_PROCESS_MRELEASE : CALLER_EXIT_MMAP;
	}
	reap_inflight.update(&t, &r);
}

static __always_inline void count_blocker(u64 ip)
{
	u64 zero = 0, *v = oom_reap_blocked.lookup_or_try_init(&ip, &zero);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void reap_exit(void *ctx, bool reaped)
{
	struct mnmon_event e = {};
	struct reap_inflight *r;
	u32 t = tid(), idx, i, slot;
	u64 ns, unknown = 0;
	u8 res = reaped ? REAP_REAPED : REAP_NOTIFIER_BLOCKED;

	r = reap_inflight.lookup(&t);
	if (!r)
		return;
	ns = bpf_ktime_get_ns() - r->ts;
	idx = r->caller * NR_REAP_RESULTS + res;
	oom_reap_calls.atomic_increment(idx);
	if (r->caller == CALLER_OOM_REAPER) {
		idx = res;
		oom_reap_attempts.atomic_increment(idx);
	}
	slot = log2_slot(ns);
	oom_reap_latency.atomic_increment(slot);
	idx = 0;
	oom_reap_latency_sum_ns.atomic_increment(idx, ns);
	if (!reaped) {
#pragma unroll
		for (i = 0; i < MAX_BLOCKERS; i++)
			if (r->blockers[i])
				count_blocker(r->blockers[i]);
		if (!r->nblockers)
			count_blocker(unknown);
#if PREMATURE
		if (r->caller == CALLER_OOM_REAPER)
			premature_on_blocked(r->victim, r->blockers[0]);
#endif
	}
	e.type = EV_REAP_ATTEMPT;
	e.pid = r->victim;
	e.tid = t;
	e.result = res;
	e.caller = r->caller;
	e.ip = r->blockers[0];
	e.duration_ns = ns;
	emit(ctx, &e);
	reap_inflight.delete(&t);
}

#if KPROBE_TWINS
int reap_entry(struct pt_regs *ctx)
{
	reap_enter(ctx, PT_REGS_PARM1(ctx));
	return 0;
}

int reap_return(struct pt_regs *ctx)
{
	reap_exit(ctx, PT_REGS_RC(ctx) & 0xff);
	return 0;
}
#endif

#if REAP_KFUNC
KFUNC_PROBE(__oom_reap_task_mm, void *mm)
{
	reap_enter(ctx, (u64)mm);
	return 0;
}

KRETFUNC_PROBE(__oom_reap_task_mm, void *mm, bool ret)
{
	reap_exit(ctx, ret);
	return 0;
}
#endif

#if GAVE_UP_PROBE
/* oom_reap_task() calls sched_show_task(victim) only after "unable to reap". */
int on_sched_show_task(struct pt_regs *ctx)
{
	u64 task = PT_REGS_PARM1(ctx);
	u32 pid = 0;

	if (!is_oom_reaper())
		return 0;
	READ_FIELD(pid, task, F_TASK_PID);
	gave_up(ctx, pid);
	return 0;
}
#endif
