/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Where each kernel struct field mnmon's BPF reads lies: F_<STRUCT>_<FIELD>, a byte offset.
 *
 * With BTF_LAYOUT=1 every F_ comes as a -D flag from the running kernel's BTF
 * (monitor/kernel/layout.py, which also checks each field's size and drops the probes
 * that need a field the kernel does not have). Then bcc may compile against any kernel's
 * headers: they give only type names here, never a layout. Without BTF the offsets are
 * the headers' own, which are right only when the headers are the running kernel's
 * (the plan keeps struct readers off otherwise).
 *
 * Every read goes through these macros: READ_FIELD copies a field with
 * bpf_probe_read_kernel(); LOAD_FIELD is a plain load from a BTF-typed pointer of a
 * fentry/fexit program (the verifier checks the offset against the kernel's BTF and
 * the load costs one instruction); RAW_FIELD takes a field from a block already read.
 */
#ifndef MNMON_FIELDS_H
#define MNMON_FIELDS_H

#if !BTF_LAYOUT
#define F_RANGE_MM		offsetof(struct mmu_notifier_range, mm)
#define F_RANGE_START		offsetof(struct mmu_notifier_range, start)
#define F_RANGE_END		offsetof(struct mmu_notifier_range, end)
#if MN_API >= 502
#define F_RANGE_FLAGS		offsetof(struct mmu_notifier_range, flags)
#define F_RANGE_EVENT		offsetof(struct mmu_notifier_range, event)
#elif MN_API >= 500
#define F_RANGE_BLOCKABLE	offsetof(struct mmu_notifier_range, blockable)
#endif
#define F_MN_HLIST_NEXT		offsetof(struct mmu_notifier, hlist.next)
#define F_MN_OPS		offsetof(struct mmu_notifier, ops)
#define F_MNOPS_START		offsetof(struct mmu_notifier_ops, invalidate_range_start)
#define F_MNOPS_END		offsetof(struct mmu_notifier_ops, invalidate_range_end)
#if MN_API >= 505
#define F_MNI_TREE		offsetof(struct mmu_interval_notifier, interval_tree)
#define F_MNI_OPS		offsetof(struct mmu_interval_notifier, ops)
#define F_MNIOPS_INVALIDATE	offsetof(struct mmu_interval_notifier_ops, invalidate)
#if MN_API >= 701
#define F_MNIOPS_INVALIDATE_START offsetof(struct mmu_interval_notifier_ops, invalidate_start)
#endif
#endif
#define F_TASK_PID		offsetof(struct task_struct, pid)
#define F_TASK_CGROUPS		offsetof(struct task_struct, cgroups)
#define F_CSET_DFL_CGRP		offsetof(struct css_set, dfl_cgrp)
#define F_CGRP_KN		offsetof(struct cgroup, kn)
#define F_KN_ID			offsetof(struct kernfs_node, id)
#define F_KN_NAME		offsetof(struct kernfs_node, name)
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)	/* kernfs_node::parent became __parent */
#define F_KN_PARENT		offsetof(struct kernfs_node, __parent)
#else
#define F_KN_PARENT		offsetof(struct kernfs_node, parent)
#endif
/* The walk's fields (MN_SUBS) come from BTF only: struct mmu_notifier_subscriptions is
 * private to mm/mmu_notifier.c, no header declares it. */
#endif

/* MMU_NOTIFIER_RANGE_BLOCKABLE, (1 << 0) in range->flags since 5.2 (27560ee91ee6) */
#define RANGE_BLOCKABLE		1

#define READ_FIELD(dst, base, off) \
	bpf_probe_read_kernel(&(dst), sizeof(dst), (const char *)(base) + (off))
#define LOAD_FIELD(type, base, off)	(*(const type *)((const char *)(base) + (off)))
#define RAW_FIELD(dst, raw, off)	__builtin_memcpy(&(dst), (const char *)(raw) + (off), sizeof(dst))

/* The bytes of a struct up to the end of the fields read from it in one copy. */
#define MAX2(a, b)		((a) > (b) ? (a) : (b))
#define MIN2(a, b)		((a) < (b) ? (a) : (b))
#define SPAN3(a, b, c)		(MAX2(MAX2(a, b), c) + 8)

/* Two 8-byte fields of one struct in one copy: neighbours cost one read, not two. */
#define READ_PAIR(a, fa, b, fb, base) do {						\
	u64 __raw[(MAX2(fa, fb) - MIN2(fa, fb)) / 8 + 1] = {};				\
	bpf_probe_read_kernel(__raw, sizeof(__raw), (const char *)(base) + MIN2(fa, fb));	\
	RAW_FIELD(a, __raw, (fa) - MIN2(fa, fb));					\
	RAW_FIELD(b, __raw, (fb) - MIN2(fa, fb));					\
} while (0)

#endif
