"""Every probe mnmon plans, as rows: what it attaches to, its programs per attach method,
the metric families it feeds, and what it needs of the kernel.

attach_plan.plan() filters these rows per kernel; doctor, the CLI (known probe names)
and bench read them. A new probe is a row here and its programs in bpf/.
"""
from dataclasses import dataclass, field

# Attach methods (mnmon_probe_attached{method}).
FENTRY, KPROBE, TRACEPOINT, RAW_TRACEPOINT = "fentry", "kprobe", "tracepoint", "raw_tracepoint"
ATTEMPT_COUNT = "attempt-count"     # gave-up counted from attempts per victim inside the oom tracepoints
LEAN_FEXIT = "lean-fexit"           # the lean configuration's one program on the invalidation path
COUNTS_FEXIT = "counts-fexit"       # the counts configuration's start (latency off): counts by walk

# Kinds of row: a kernel function (fentry or kprobe), a tracepoint, a raw tracepoint.
FUNCTION = "function"

# What a row may need of the kernel beyond its targets (attach_plan computes each per kernel):
STRUCTS = "structs"                 # reads notifier structs: their layout from BTF, or own headers
TASK_FIELDS = "task_fields"         # reads a task's pid (layout as STRUCTS)
NONBLOCK_API = "nonblock_api"       # 4.19+: a false __oom_reap_task_mm means a notifier failed
INTERVAL_API = "interval_api"       # 5.5+: interval notifiers exist
WALK = "walk"                       # the core probes walk mm's subscriptions (5.6+, vmlinux BTF)
VICTIM_TASK = "victim_task"         # oom:mark_victim passes the victim's task (comm in its record)
OOM_DOMAIN = "oom_domain"           # out_of_memory's memcg and a cgroup's id can be read (BTF)
LOG_ARGS = "log_args"               # a printk's arguments can be read from its va_list (x86-64)


def feeds(*families, result=None):
    """(family, result) pairs: the series a row measures; result None: all of the family."""
    return tuple((f, result) for f in families)


START_FAMILIES = ("mnmon_invalidate_range_start_total", "mnmon_unpaired_invalidate_starts_total",
                  "mnmon_notifier_invalidations_total", "mnmon_notifier_invalidate_range_end_total",
                  "mnmon_notifier_invalidation_duration_seconds")
REAP_FAMILIES = ("mnmon_oom_reap_calls_total", "mnmon_oom_reap_blocked_total", "mnmon_oom_reap_duration_seconds")
PREMATURE_FAMILIES = ("mnmon_oom_premature_victims_total", "mnmon_oom_given_up_mm_held_seconds")
# A premature victim is known from a victim's choice and domain, its reap's mm and blocker,
# the give-up and the mm's teardown: counted only with every one of these attached.
PREMATURE_PROBES = ("oom_domain", "mm_teardown", "oom:mark_victim", "oom_reap_task_mm", "oom_reaper_gave_up")


@dataclass(frozen=True)
class Row:
    name: str                       # mnmon_probe_attached{probe}, probes.disable
    targets: tuple                  # functions, 'category:event' tracepoints, or a raw tracepoint
    programs: dict = field(compare=False)   # method -> (entry, return), preferred method first
    feeds: tuple = ()               # (family, result or None) it measures
    kind: str = FUNCTION
    needs: tuple = ()               # of the capabilities above
    omit_without: tuple = ()        # needs whose absence leaves the row out of the plan altogether
    core: bool = False              # needed for per-notifier outcomes (doctor's exit status)
    group: str = "other"            # bench/toggle.py's attach groups: core | other
    lean_off: str = ""              # off in the lean configuration, and what that costs
    lean_programs: dict = field(default=None, compare=False)   # its programs in the lean configuration
    lean_feeds: tuple = None        # what it measures there
    counts_off: str = ""            # the same for the counts configuration (probes.latency: off)
    counts_programs: dict = field(default=None, compare=False)
    counts_feeds: tuple = None
    sampled_feeds: tuple = None     # ... with callbacks timed in windows (probes.latency: sampled)
    always_programs: dict = field(default=None, compare=False)   # ... timed always (probes.latency: always)
    always_feeds: tuple = None
    discovers: bool = False         # finds callbacks only: kept where callbacks are timed in windows
    full_off: str = ""              # not a probe of the full configuration (callback probes), and why
    fallback: tuple = ()            # (targets, method) standing in where no method can attach it
    with_probes: tuple = ()         # other probes its feeds need attached too (else not measured)


ROWS = (
    Row("invalidate_range_start", ("__mmu_notifier_invalidate_range_start",),
        {FENTRY: ("kfunc____mmu_notifier_invalidate_range_start", "kretfunc____mmu_notifier_invalidate_range_start"),
         KPROBE: ("core_start_entry", "core_start_return")},
        feeds(*START_FAMILIES, "mnmon_invalidate_range_start_duration_seconds", "mnmon_invalidations_total"),
        needs=(STRUCTS,), core=True, group="core",
        lean_programs={LEAN_FEXIT: (None, "kretfunc____mmu_notifier_invalidate_range_start")},
        lean_feeds=feeds(*START_FAMILIES),
        counts_programs={COUNTS_FEXIT: (None, "kretfunc____mmu_notifier_invalidate_range_start")},
        counts_feeds=feeds(*START_FAMILIES[:-1], "mnmon_invalidations_total"),
        sampled_feeds=feeds(*START_FAMILIES, "mnmon_invalidations_total"),
        # latency always times the core start too: an entry beside the counts fexit
        always_programs={COUNTS_FEXIT: ("kfunc____mmu_notifier_invalidate_range_start",
                                        "kretfunc____mmu_notifier_invalidate_range_start")},
        always_feeds=feeds(*START_FAMILIES, "mnmon_invalidate_range_start_duration_seconds",
                           "mnmon_invalidations_total")),
    Row("invalidate_range_end", ("__mmu_notifier_invalidate_range_end",),
        {FENTRY: ("kfunc____mmu_notifier_invalidate_range_end", None), KPROBE: ("core_end_entry", None)},
        feeds("mnmon_invalidate_range_end_total", "mnmon_invalidations_in_progress"),
        needs=(STRUCTS,), core=True, group="core",
        lean_off="ends (and sections in progress) not counted"),
    Row("notifier_register", ("__mmu_notifier_register",), {KPROBE: ("on_mmu_notifier_register", None)},
        needs=(STRUCTS,), lean_off="no callback probes to discover for", counts_off="no callback probes to discover for",
        discovers=True),
    Row("notifier_release", ("__mmu_notifier_release",),
        {FENTRY: ("kfunc____mmu_notifier_release", None), KPROBE: ("on_notifier_release", None)},
        needs=(WALK, STRUCTS), lean_off="each notifier's blockable calls not counted"),
    Row("interval_notifier_insert", ("mmu_interval_notifier_insert", "mmu_interval_notifier_insert_locked"),
        {KPROBE: ("on_interval_insert", None)}, needs=(INTERVAL_API, STRUCTS), omit_without=(INTERVAL_API,),
        lean_off="no callback probes to discover for", counts_off="no callback probes to discover for",
        discovers=True),
    # Which list notifier failed, from the kernel's log line of it (bpf/failure_log.bpf.c):
    # where no callback probe sees outcomes.
    Row("list_failure_log", ("vprintk_emit",), {FENTRY: ("kfunc__vprintk_emit", None)},
        needs=(WALK, STRUCTS, LOG_ARGS), full_off="callback probes see each outcome in this configuration"),
    Row("oom_reap_task_mm", ("__oom_reap_task_mm",),
        {FENTRY: ("kfunc____oom_reap_task_mm", "kretfunc____oom_reap_task_mm"), KPROBE: ("reap_entry", "reap_return")},
        feeds(*REAP_FAMILIES) + feeds("mnmon_oom_reap_attempts_total", result="reaped")
        + feeds("mnmon_oom_reap_attempts_total", result="notifier_blocked"),
        # Before 4.19 (93065ac753e4) its false never meant a notifier failure: it meant a contended
        # mmap_sem, a skip oom:skip_task_reaping already reports. Counted, it would blame notifiers.
        needs=(NONBLOCK_API,)),
    Row("oom_reaper_gave_up", ("sched_show_task",), {KPROBE: ("on_sched_show_task", None)},
        feeds("mnmon_oom_reaper_gave_up_total"), needs=(TASK_FIELDS,),
        # Counting attempts per victim from oom:start/skip_task_reaping stands in.
        fallback=(("oom:start_task_reaping",), ATTEMPT_COUNT)),
    Row("oom:mark_victim", ("oom:mark_victim",), {TRACEPOINT: ("on_mark_victim", None)},
        feeds("mnmon_oom_victims_total", "mnmon_oom_tracked_victims_total"), kind=TRACEPOINT),
    Row("oom:start_task_reaping", ("oom:start_task_reaping",), {TRACEPOINT: ("on_start_task_reaping", None)},
        kind=TRACEPOINT),
    Row("oom:skip_task_reaping", ("oom:skip_task_reaping",), {TRACEPOINT: ("on_skip_task_reaping", None)},
        feeds("mnmon_oom_reap_attempts_total", result="skipped"), kind=TRACEPOINT),
    # Whose cgroup a victim is in: its task, where oom:mark_victim passes it (its record then has
    # comm), else the cgroup of the task that ran into the limit (bpf/oom.bpf.c).
    Row("oom_victim_cgroup", ("mark_victim",), {RAW_TRACEPOINT: ("on_mark_victim_task", None)},
        kind=RAW_TRACEPOINT, needs=(VICTIM_TASK,), omit_without=(VICTIM_TASK,)),
    # Premature victims (bpf/premature.bpf.c): the OOM's domain, and the end of given-up mms.
    Row("oom_domain", ("out_of_memory",), {KPROBE: ("on_out_of_memory", None)}, needs=(OOM_DOMAIN,)),
    Row("mm_teardown", ("exit_mmap",), {KPROBE: ("on_exit_mmap", None)}, feeds(*PREMATURE_FAMILIES),
        needs=(OOM_DOMAIN,), with_probes=PREMATURE_PROBES),
)

BY_NAME = {r.name: r for r in ROWS}


def names():
    """Every probe name probes.disable may name (a kernel may plan fewer)."""
    return [r.name for r in ROWS]


def core_names():
    """The probes per-notifier outcomes need."""
    return [r.name for r in ROWS if r.core]


def group(probe):
    """bench/toggle.py's attach group of a probe: core, callbacks (notifier:*) or other."""
    row = BY_NAME.get(probe)
    return row.group if row else "callbacks"


def first_methods():
    """(probe, its preferred method) of every row: the plan of a kernel that has everything."""
    return [(r.name, next(iter(r.programs))) for r in ROWS]
