// SPDX-License-Identifier: GPL-2.0
/*
 * Premature OOM victims: a victim chosen while an earlier victim of the same OOM domain,
 * whose reap the reaper gave up on, still holds its address space. The give-up sets
 * MMF_OOM_SKIP, so the OOM killer looks past that victim though its memory is not freed
 * until its mm is torn down (exit_mmap). Counted by the notifier that blocked the earlier
 * reap; how long given-up mms stay, from their victim's choice to exit_mmap.
 *
 * The OOM domain: out_of_memory()'s oc->memcg, the memory cgroup whose limit was hit
 * (its cgroup id), or 0 for a global OOM (the machine). Every oom:mark_victim runs inside
 * out_of_memory() on the same thread. A global OOM counts any held mm; a memcg OOM only
 * those of victims its own memcg chose (a victim chosen by a global OOM, or by another
 * memcg's limit above or below, is not compared: only ancestry could tell).
 *
 * Included by mnmon.bpf.c before oom.bpf.c, whose programs call the premature_* hooks.
 */
#if PREMATURE
struct victim_rec {
	u64 marked_ns;		/* when the OOM killer chose it */
	u64 domain;
	u64 mm;			/* what the reaper worked on (__oom_reap_task_mm's argument) */
	u64 blocker;		/* the last notifier that failed its reap; 0: none named */
	char comm[16];
};

struct held_mm {
	u64 mm;			/* 0: a free slot */
	u64 marked_ns;
	u64 domain;
	u64 blocker;
	u32 pid;
	char comm[16];
};

BPF_TABLE("lru_hash", u32, u64, oom_domain_of, 256);		/* thread in out_of_memory -> domain */
BPF_TABLE("lru_hash", u32, struct victim_rec, victim_recs, 256);	/* victim pid -> its record */
/* Few victims are given up on at once: slots a program can walk (no map iteration in 5.10). */
BPF_ARRAY(held_mms, struct held_mm, MAX_HELD);
BPF_ARRAY(nr_held, u64, 1);	/* slots in use: exit_mmap of every other mm stops at this */
BPF_PERCPU_HASH(oom_premature_victims, u64, u64, 256);	/* blocker address; 0: unknown */
BPF_PERCPU_ARRAY(oom_held_mm_latency, u64, NR_LAT_SLOTS);
BPF_PERCPU_ARRAY(oom_held_mm_latency_sum_ns, u64, 1);

int on_out_of_memory(struct pt_regs *ctx)
{
	u64 oc = PT_REGS_PARM1(ctx), memcg = 0, cgrp = 0, kn = 0, id = 0;
	u32 t = tid();

	READ_FIELD(memcg, oc, F_OC_MEMCG);
	if (memcg) {
		READ_FIELD(cgrp, memcg, F_MEMCG_CSS_CGROUP);
		if (cgrp)
			READ_FIELD(kn, cgrp, F_CGRP_KN);
		if (kn)
			READ_FIELD(id, kn, F_KN_ID);
		if (!id)
			id = memcg;	/* unnamed, still one domain per memcg */
	}
	oom_domain_of.update(&t, &id);
	return 0;
}

static __always_inline void premature_on_victim(void *ctx, u32 pid, const char *comm)
{
	struct victim_rec v = {};
	struct mnmon_event e = {};
	struct held_mm *h;
	u32 t = tid(), zero = 0, i, first = MAX_HELD;
	u64 *d = oom_domain_of.lookup(&t), *n, oldest = ~0ULL, blocker, none = 0;

	v.marked_ns = bpf_ktime_get_ns();
	v.domain = d ? *d : 0;
	__builtin_memcpy(v.comm, comm, sizeof(v.comm));
	victim_recs.update(&pid, &v);
	n = nr_held.lookup(&zero);
	if (!n || !*n)
		return;
#pragma unroll
	for (i = 0; i < MAX_HELD; i++) {
		u32 k = i;

		h = held_mms.lookup(&k);
		if (!h || !h->mm || h->pid == pid)
			continue;
		if (v.domain && h->domain != v.domain)
			continue;
		if (h->marked_ns < oldest) {
			oldest = h->marked_ns;
			first = i;
		}
	}
	if (first == MAX_HELD)
		return;
	h = held_mms.lookup(&first);
	if (!h)
		return;
	blocker = h->blocker;
	n = oom_premature_victims.lookup_or_try_init(&blocker, &none);
	if (n)
		__sync_fetch_and_add(n, 1);
	e.type = EV_PREMATURE_VICTIM;
	e.pid = pid;
	e.tid = t;
	e.ip = blocker;
	e.duration_ns = v.marked_ns - h->marked_ns;
	e.domain = v.domain;
	e.first_pid = h->pid;
	__builtin_memcpy(e.comm, comm, sizeof(e.comm));
	__builtin_memcpy(e.first_comm, h->comm, sizeof(e.first_comm));
	emit(ctx, &e);
}

/* The oom_reaper's attempt on a victim: the mm it will be followed by. */
static __always_inline void premature_on_reap(u32 victim, u64 mm)
{
	struct victim_rec *v = victim_recs.lookup(&victim);

	if (v)
		v->mm = mm;
}

static __always_inline void premature_on_blocked(u32 victim, u64 blocker)
{
	struct victim_rec *v = victim_recs.lookup(&victim);

	if (v && blocker)
		v->blocker = blocker;
}

/* The reaper gave up: the victim's mm is held (MMF_OOM_SKIP set) until exit_mmap. A victim
 * whose every attempt found its mmap lock taken never showed its mm: not followed. */
static __always_inline void premature_on_gave_up(u32 pid)
{
	struct victim_rec *v = victim_recs.lookup(&pid);
	struct held_mm *h, *slot = 0;
	u32 i, zero = 0;
	u64 oldest = ~0ULL, *n;
	bool fresh = false;

	if (!v || !v->mm)
		return;
#pragma unroll
	for (i = 0; i < MAX_HELD; i++) {
		u32 k = i;

		h = held_mms.lookup(&k);
		if (!h)
			continue;
		if (!h->mm) {
			slot = h;
			fresh = true;
			break;
		}
		if (h->marked_ns < oldest) {	/* all taken: the oldest gives way */
			oldest = h->marked_ns;
			slot = h;
		}
	}
	if (!slot)
		return;
	slot->marked_ns = v->marked_ns;
	slot->domain = v->domain;
	slot->blocker = v->blocker;
	slot->pid = pid;
	__builtin_memcpy(slot->comm, v->comm, sizeof(slot->comm));
	slot->mm = v->mm;		/* last: the slot is in use from here */
	n = nr_held.lookup(&zero);
	if (n && fresh)
		__sync_fetch_and_add(n, 1);
}

/* exit_mmap(mm): the address space's teardown (notifiers' release runs in it). */
int on_exit_mmap(struct pt_regs *ctx)
{
	u64 mm = PT_REGS_PARM1(ctx), *n, ns;
	struct held_mm *h;
	u32 zero = 0, i, slot;

	n = nr_held.lookup(&zero);
	if (!n || !*n)
		return 0;
#pragma unroll
	for (i = 0; i < MAX_HELD; i++) {
		u32 k = i;

		h = held_mms.lookup(&k);
		if (!h || h->mm != mm)
			continue;
		ns = bpf_ktime_get_ns() - h->marked_ns;
		slot = log2_slot(ns);
		oom_held_mm_latency.atomic_increment(slot);
		oom_held_mm_latency_sum_ns.atomic_increment(zero, ns);
		h->mm = 0;
		__sync_fetch_and_add(n, -1);
	}
	return 0;
}
#endif
