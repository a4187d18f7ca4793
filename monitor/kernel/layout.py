"""Where the kernel struct fields mnmon's BPF reads lie on the running kernel.

bcc compiles against whatever headers the host has; a field's offset from headers is
right only when they are the running kernel's, and fleets (managed node images, vendor
and cloud kernels) rarely have those. Every kernel mnmon supports has BTF
(/sys/kernel/btf/vmlinux), which describes its structs as built: each field in FIELDS
is located there, checked for the size the BPF reads, and passed to the compile as
-DF_<NAME>=<offset> (bpf/fields.h). A field the kernel does not have (renamed, moved,
resized) is never read at a guessed offset: its group is missing, and the probes that
need the group stay off with the field named (monitor/plan/attach_plan.py).
Without BTF the headers' own offsets serve, where they are the running kernel's.
"""
from dataclasses import dataclass, field

from monitor.kernel import btf
from monitor.kernel.btf import BTFError

# Groups: what reads them (the plan turns a missing group into probes left off).
RANGE = "range"          # the invalidation range: core probes and callbacks
LIST = "list"            # list notifiers and their ops: discovery, the walk, pairing
INTERVAL = "interval"    # interval notifiers and their ops (5.5+)
WALK = "walk"            # an mm's subscriptions and their trees: the walk (5.6+)
TASK = "task"            # a task's pid: the reaper's give-up, the victim's task
CGROUP = "cgroup"        # a task's cgroup and its names: victims by cgroup
OOM_DOMAIN = "oom_domain"   # the memcg an OOM hit the limit of: premature victims

# (macro, struct, member path or alternatives, size the BPF reads or None: offset only, group)
FIELDS = (
    ("RANGE_MM", "mmu_notifier_range", "mm", 8, RANGE),
    ("RANGE_START", "mmu_notifier_range", "start", 8, RANGE),
    ("RANGE_END", "mmu_notifier_range", "end", 8, RANGE),
    ("RANGE_FLAGS", "mmu_notifier_range", "flags", 4, RANGE),
    ("RANGE_EVENT", "mmu_notifier_range", "event", 4, RANGE),
    ("MN_HLIST_NEXT", "mmu_notifier", "hlist.next", 8, LIST),
    ("MN_OPS", "mmu_notifier", "ops", 8, LIST),
    ("MNOPS_START", "mmu_notifier_ops", "invalidate_range_start", 8, LIST),
    ("MNOPS_END", "mmu_notifier_ops", "invalidate_range_end", 8, LIST),
    ("MNI_TREE", "mmu_interval_notifier", "interval_tree", None, INTERVAL),
    ("MNI_OPS", "mmu_interval_notifier", "ops", 8, INTERVAL),
    ("MNIOPS_INVALIDATE", "mmu_interval_notifier_ops", "invalidate", 8, INTERVAL),
    ("MM_SUBS", "mm_struct", "notifier_subscriptions", 8, WALK),
    ("SUBS_LIST", "mmu_notifier_subscriptions", "list.first", 8, WALK),
    ("SUBS_HAS_ITREE", "mmu_notifier_subscriptions", "has_itree", 1, WALK),
    ("SUBS_LEFTMOST", "mmu_notifier_subscriptions", "itree.rb_leftmost", 8, WALK),
    ("RB_PARENT_COLOR", "rb_node", "__rb_parent_color", 8, WALK),
    ("RB_RIGHT", "rb_node", "rb_right", 8, WALK),
    ("RB_LEFT", "rb_node", "rb_left", 8, WALK),
    ("ITN_RB", "interval_tree_node", "rb", None, WALK),
    ("ITN_START", "interval_tree_node", "start", 8, WALK),
    ("ITN_LAST", "interval_tree_node", "last", 8, WALK),
    ("TASK_PID", "task_struct", "pid", 4, TASK),
    ("TASK_CGROUPS", "task_struct", "cgroups", 8, CGROUP),
    ("CSET_DFL_CGRP", "css_set", "dfl_cgrp", 8, CGROUP),
    ("CGRP_KN", "cgroup", "kn", 8, CGROUP),
    ("KN_ID", "kernfs_node", "id", 8, CGROUP),
    ("KN_NAME", "kernfs_node", "name", 8, CGROUP),
    ("KN_PARENT", "kernfs_node", ("__parent", "parent"), 8, CGROUP),    # __parent since 6.15
    ("OC_MEMCG", "oom_control", "memcg", 8, OOM_DOMAIN),
    ("MEMCG_CSS_CGROUP", "mem_cgroup", "css.cgroup", 8, OOM_DOMAIN),
)
# Read where the kernel has them, no group lost without: 7.1's two-pass interval ops; the
# sequence numbers that name a failed interval among several (bpf/attribute.bpf.c).
OPTIONAL = (("MNIOPS_INVALIDATE_START", "mmu_interval_notifier_ops", "invalidate_start", 8),
            ("MNI_SEQ", "mmu_interval_notifier", "invalidate_seq", 8),
            ("SUBS_SEQ", "mmu_notifier_subscriptions", "invalidate_seq", 8))

BTF_SOURCE, HEADERS_SOURCE = "BTF", "headers"


@dataclass(frozen=True)
class Layout:
    """The running kernel's layout of what mnmon reads: from BTF (offsets), or from its own
    headers (offsets left to bpf/fields.h's offsetof)."""
    source: str
    offsets: dict = field(default_factory=dict)     # macro -> byte offset (BTF only)
    paths: dict = field(default_factory=dict)       # macro -> (struct, member path) found
    missing: dict = field(default_factory=dict)     # group -> why it cannot be read

    def lacks(self, *groups):
        """Why one of groups cannot be read here ("" when all can)."""
        return "; ".join(self.missing[g] for g in groups if g in self.missing)

    def cflags(self):
        if self.source != BTF_SOURCE:
            return ["-DBTF_LAYOUT=0"]
        return ["-DBTF_LAYOUT=1"] + [f"-DF_{name}={off}" for name, off in sorted(self.offsets.items())]

    def summary(self):
        """One line for `mnmon doctor`: where the layout came from, and what it lacks."""
        where = ("the running kernel's BTF (/sys/kernel/btf/vmlinux)" if self.source == BTF_SOURCE
                 else "the running kernel's own headers (no BTF)")
        if self.source == BTF_SOURCE:
            where = f"{len(self.offsets)} fields from {where}"
            if WALK not in self.missing and not {"MNI_SEQ", "SUBS_SEQ"} <= set(self.offsets):
                where += ("; no invalidate_seq: which of several overlapping interval notifiers "
                          "failed a non-blockable start stays unknown")
        return where + (f"; missing: {self.lacks(*self.missing)}" if self.missing else "")


def headers_only():
    """Offsets from the running kernel's own headers: everything but the walk, whose struct
    (mmu_notifier_subscriptions) no header declares, and the OOM domain (bpf/fields.h
    has no header offsets for it: every kernel with out_of_memory's memcg readable has BTF)."""
    return Layout(HEADERS_SOURCE, missing={
        WALK: "no vmlinux BTF to read the layout of struct mmu_notifier_subscriptions",
        OOM_DOMAIN: "no vmlinux BTF to read the layout of struct oom_control and struct mem_cgroup"})


def from_btf(btf):
    """The Layout of the kernel btf describes (a monitor.kernel.btf.BTF)."""
    offsets, paths, missing = {}, {}, {}
    for name, struct_name, alternatives, size, group in FIELDS:
        off, path, why = _locate(btf, struct_name, alternatives, size)
        if why:
            missing.setdefault(group, why)
        else:
            offsets[name], paths[name] = off, (struct_name, path)
    for name, _s, _p, _size, group in FIELDS:     # a group is read whole or not at all
        if group in missing:
            offsets.pop(name, None), paths.pop(name, None)
    for name, struct_name, alternatives, size in OPTIONAL:
        off, path, why = _locate(btf, struct_name, alternatives, size)
        if not why:
            offsets[name], paths[name] = off, (struct_name, path)
    return Layout(BTF_SOURCE, offsets, paths, missing)


def _locate(btf, struct_name, paths, size):
    """(offset, path, "") of the first of paths the struct has, or (None, None, why not)."""
    why = ""
    for path in (paths,) if isinstance(paths, str) else paths:
        try:
            off, got, _type = btf.member(struct_name, path)
        except BTFError as e:
            why = why or str(e)
            continue
        if size is not None and got != size:
            return None, None, f"struct {struct_name}.{path} is {got} bytes here, mnmon reads {size}"
        return off, path, ""
    return None, None, why


def read(headers, btf_path="/sys/kernel/btf/vmlinux"):
    """(Layout or None, why None) for the running kernel. headers: 'matching' | 'other' | 'none'
    (facts.find_headers). BTF first, whatever the headers; else the headers' own, if theirs."""
    try:
        return from_btf(btf.load(str(btf_path))), ""
    except FileNotFoundError:
        why = "no BTF (/sys/kernel/btf/vmlinux)"
    except (OSError, BTFError) as e:
        why = f"BTF unreadable ({e})"
    if headers == "matching":
        return headers_only(), ""
    return None, why
