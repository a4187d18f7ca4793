"""What to attach on this kernel, and how: the one place where that is decided.

plan(facts) is pure, so the kernel generations this project cannot boot are
covered by tests of it (tests/unit/test_attach_plan.py).
"""
from dataclasses import dataclass, field

FENTRY, KPROBE, TRACEPOINT, ATTEMPT_COUNT = "fentry", "kprobe", "tracepoint", "attempt-count"
# The lean configuration's one program on the invalidation path: an fexit (bpf/invalidate.bpf.c).
LEAN_FEXIT = "lean-fexit"
# What the lean configuration leaves off, and why each can go.
LEAN_OFF = {
    "invalidate_range_end": "off in the lean configuration: ends (and sections in progress) not counted",
    "notifier_register": "off in the lean configuration: no callback probes to discover for",
    "interval_notifier_insert": "off in the lean configuration: no callback probes to discover for",
    "notifier_release": "off in the lean configuration: each notifier's blockable calls not counted",
}
RAW_TRACEPOINT = "raw_tracepoint"
# Where a thread's in-flight invalidation is kept (bpf/mnmon.bpf.c, TASK_STORAGE).
TASK_STORAGE, HASH = "task-storage", "hash"


@dataclass(frozen=True)
class ProbeSpec:
    """One probe users see in `mnmon doctor` and mnmon_probe_attached{probe}."""
    probe: str
    targets: tuple                 # functions or 'category:event' tracepoints
    methods: tuple = ()            # preferred first; empty: unavailable, see reason
    programs: dict = field(default_factory=dict, compare=False)   # method -> (entry, return)
    reason: str = ""
    core: bool = False             # needed for per-notifier outcomes (doctor's exit status)
    off: bool = False              # left off by the configuration (reason says which), not refused


@dataclass
class Plan:
    api: int
    cflags: list
    probes: list
    callbacks: str                 # "" if per-notifier callback probes can attach, else why not
    inflight: str = HASH           # TASK_STORAGE or HASH
    walk: str = "n/a"              # "" if every notifier is counted from its first call, else why not
    ring_buffer: bool = True       # rare events through a BPF ring buffer (5.8+), else a perf buffer
    probe_ends: bool = True        # invalidate_range_end callbacks need probes (else the core counts them)
    # "" if notifier callbacks are probed by fentry/fexit where their module has BTF (kprobe
    # otherwise, chosen per callback: watch.py), else why kprobes only
    callback_fentry: str = "n/a"
    lean: bool = False             # the lean configuration (see plan())


def api_generation(version):
    """The notifier API generation of a kernel version (see bpf/mnmon.bpf.c, MN_API)."""
    if version < (4, 19):
        return 0        # before non-blockable invalidation existed
    if version < (5, 0):
        return 419      # blockable is an argument
    if version < (5, 2):
        return 500      # range->blockable
    if version < (5, 5):
        return 502      # range->flags
    if version < (7, 1):
        return 505      # + interval notifiers (6.6 drops _end's only_end: no probe reads it)
    return 701          # + two-pass interval ops (invalidate_start/_finish)


def _function_probe(name, targets, facts, *, struct_reads, fentry_ok, programs, why_not_struct, core=False,
                    force=None):
    missing = [t for t in targets if t not in facts.symbols]
    if len(missing) == len(targets):
        if not facts.kallsyms_readable:      # not known to be missing: not seen
            return ProbeSpec(name, targets, reason="could not read /proc/kallsyms (needs root or CAP_SYSLOG)", core=core)
        return ProbeSpec(name, targets, reason=f"{', '.join(missing)} not in kallsyms (inlined, static or not built)", core=core)
    targets = tuple(t for t in targets if t not in missing)
    if struct_reads and why_not_struct:
        also = "" if facts.kprobes else "; also no kprobes (CONFIG_KPROBES off)"
        return ProbeSpec(name, targets, reason=why_not_struct + also, core=core)
    methods = []
    if fentry_ok and FENTRY in programs:
        methods.append(FENTRY)
    if facts.kprobes and KPROBE in programs:
        methods.append(KPROBE)
    if not methods:
        reason = "no kprobes on this kernel (CONFIG_KPROBES off)"
        if FENTRY in programs:
            reason += ", and no fentry (needs 5.5+, BTF and BPF trampolines)"
        return ProbeSpec(name, targets, reason=reason, core=core)
    if force:
        if force not in methods:
            return ProbeSpec(name, targets, reason=f"{force} forced, but only {', '.join(methods)} "
                             f"can attach it here", core=core)
        methods = [force]
    return ProbeSpec(name, targets, tuple(methods), programs, core=core)


def plan(facts, force=None, inflight=None, callbacks=None, lean=False):
    """The probes to attach on a kernel described by facts (monitor.kernel.KernelFacts).

    force: {probe: method} pins function probes to one method, with no fallback
    (benchmarks compare kprobe with fentry on one kernel). A forced method the
    kernel cannot give leaves the probe unattached, with the reason; ValueError
    for a method that is not fentry or kprobe, or a probe that is not a function
    probe of this plan.
    inflight: TASK_STORAGE or HASH pins where in-flight invalidations are kept
    (tests and benchmarks run both on one kernel); ValueError where it cannot be.
    callbacks: KPROBE probes notifier callbacks by kprobe only (fentry pins a module:
    see _callback_fentry); FENTRY or None: fentry where it can attach.
    lean: the lean configuration, for always-on fleets: one fexit on the core start and
    nothing else on the invalidation path. It keeps the core counts (starts by mode and
    result), each notifier's non-blockable calls and outcomes, and who blocked the reaper
    (the walk of the mm's subscriptions, run for non-blockable starts only); it drops
    latency, counts by event, ends, callback probes and each notifier's blockable calls.
    ValueError where it cannot run (it needs fentry on the core start and the walk).
    """
    force = dict(force or {})
    if bad := sorted(f"{p}={m}" for p, m in force.items() if m not in (FENTRY, KPROBE)):
        raise ValueError(f"cannot force {', '.join(bad)}: only {FENTRY} or {KPROBE} can be forced")
    api = api_generation(facts.version)
    why_not_struct = ""
    if facts.headers != "matching":
        why_not_struct = ("no kernel headers for this kernel" if facts.headers == "none" else
                          f"headers at {facts.headers_dir} are not this kernel's: struct offsets unknown")
    if api == 0:
        why_not_struct = f"kernel {facts.release} predates non-blockable invalidation (4.19)"
    fentry_ok = facts.kfunc and facts.btf and facts.version >= (5, 5)
    inflight = _inflight(facts, inflight, structs=not why_not_struct)
    fn = lambda name, *a, **k: _function_probe(name, *a, facts=facts, fentry_ok=fentry_ok,
                                               why_not_struct=why_not_struct, force=force.pop(name, None), **k)
    probes = [
        fn("invalidate_range_start", ("__mmu_notifier_invalidate_range_start",), struct_reads=True, core=True,
           programs={FENTRY: ("kfunc____mmu_notifier_invalidate_range_start",
                              "kretfunc____mmu_notifier_invalidate_range_start"),
                     KPROBE: ("core_start_entry", "core_start_return")}),
        fn("invalidate_range_end", ("__mmu_notifier_invalidate_range_end",), struct_reads=True, core=True,
           programs={FENTRY: ("kfunc____mmu_notifier_invalidate_range_end", None),
                     KPROBE: ("core_end_entry", None)}),
        fn("notifier_register", ("__mmu_notifier_register",), struct_reads=True,
           programs={KPROBE: ("on_mmu_notifier_register", None)}),
    ]
    walk = _walk_subscriptions(facts, why_not_struct)
    if not walk:
        probes.append(fn("notifier_release", ("__mmu_notifier_release",), struct_reads=True,
                         programs={FENTRY: ("kfunc____mmu_notifier_release", None),
                                   KPROBE: ("on_notifier_release", None)}))
    else:
        probes.append(ProbeSpec("notifier_release", ("__mmu_notifier_release",), reason=walk))
    if api >= 505:
        probes.append(fn("interval_notifier_insert",
                         ("mmu_interval_notifier_insert", "mmu_interval_notifier_insert_locked"),
                         struct_reads=True, programs={KPROBE: ("on_interval_insert", None)}))
    reap = fn("oom_reap_task_mm", ("__oom_reap_task_mm",), struct_reads=False,
              programs={FENTRY: ("kfunc____oom_reap_task_mm", "kretfunc____oom_reap_task_mm"),
                        KPROBE: ("reap_entry", "reap_return")})
    if api == 0 and reap.methods:
        # Before 4.19 (93065ac753e4) its false never meant a notifier failure: it meant a contended
        # mmap_sem, a skip oom:skip_task_reaping already reports. Counted here, it would blame notifiers.
        reap = ProbeSpec(reap.probe, reap.targets, reason=why_not_struct)
    probes.append(reap)
    gave_up = fn("oom_reaper_gave_up", ("sched_show_task",), struct_reads=True,
                 programs={KPROBE: ("on_sched_show_task", None)})
    if not gave_up.methods:
        # Counting attempts per victim from oom:start/skip_task_reaping stands in.
        gave_up = ProbeSpec("oom_reaper_gave_up", ("oom:start_task_reaping",),
                            (ATTEMPT_COUNT,) if "oom:start_task_reaping" in facts.tracepoints else (),
                            reason=gave_up.reason)
    probes.append(gave_up)
    if force:
        raise ValueError(f"cannot force a method on {', '.join(sorted(force))}: not a function probe here")
    if lean:
        probes = _lean(probes, walk, api)
    tracepoints = [("oom:mark_victim", "on_mark_victim"), ("oom:start_task_reaping", "on_start_task_reaping"),
                   ("oom:skip_task_reaping", "on_skip_task_reaping")]
    for tp, prog in tracepoints:
        if tp in facts.tracepoints:
            probes.append(ProbeSpec(tp, (tp,), (TRACEPOINT,), {TRACEPOINT: (prog, None)}))
        else:
            probes.append(ProbeSpec(tp, (tp,), reason="could not read tracefs (root's)" if not facts.tracefs_readable
                                    else "tracepoint not in tracefs (kernel too old or tracefs not mounted)"))
    # Whose cgroup a victim is in: its task, where oom:mark_victim passes it (its record then has
    # comm), else the cgroup of the task that ran into the limit (bpf/oom.bpf.c).
    victim_task = "comm" in facts.mark_victim_fields and not why_not_struct and "oom:mark_victim" in facts.tracepoints
    if victim_task:
        probes.append(ProbeSpec("oom_victim_cgroup", ("mark_victim",), (RAW_TRACEPOINT,),
                                {RAW_TRACEPOINT: ("on_mark_victim_task", None)}))

    by = {p.probe: p for p in probes}
    cb_fentry = _callback_fentry(facts, api, fentry_ok, callbacks, why_not_struct)
    callbacks_reason = why_not_struct or ("" if facts.kprobes or not cb_fentry else
                                          f"no kprobes on this kernel (CONFIG_KPROBES off), and no fentry on "
                                          f"callbacks: {cb_fentry}")
    mv = facts.mark_victim_fields
    ring_buffer = facts.version >= (5, 8)       # BPF ring buffer: 5.8 (457f44363a88)
    ends_paired = facts.version >= (5, 10)
    # The walk counts every end; an end probe is then needed only to check pairing, which
    # kernels with c2655835fd8c guarantee.
    probe_ends = (bool(walk) or not ends_paired) and not lean
    cflags = [
        f"-DMN_API={api or 419}",
        f"-DHAVE_STRUCTS={0 if why_not_struct else 1}",
        f"-DCORE_KFUNC={int(bool({FENTRY, LEAN_FEXIT} & set(by['invalidate_range_start'].methods)))}",
        f"-DREAP_KFUNC={int(FENTRY in by['oom_reap_task_mm'].methods)}",
        f"-DGAVE_UP_PROBE={int(KPROBE in by['oom_reaper_gave_up'].methods)}",
        f"-DUSE_RINGBUF={int(ring_buffer)}",
        f"-DTASK_STORAGE={int(inflight == TASK_STORAGE)}",
        f"-DMN_SUBS={int(not walk)}",
        f"-DMV_TASK_ARG={int(victim_task)}",
        # c2655835fd8c (5.12, in 5.10.y): a failed list pass ends every list notifier itself.
        f"-DENDS_IN_FAILED_START={int(ends_paired)}",
        f"-DCB_KFUNC={int(not cb_fentry and not lean)}",       # fentry programs for notifier callbacks
        f"-DLEAN={int(bool(lean))}",
    ]
    if not walk:
        cflags += [f"-DMN_SUBS_HAS_ITREE_OFF={facts.subscriptions['has_itree']}",
                   f"-DMN_SUBS_LEFTMOST_OFF={facts.subscriptions['leftmost']}"]
    if all(k in mv for k in ("anon_rss", "file_rss", "shmem_rss")):     # oom:mark_victim, 6.9+
        cflags += [f"-DMV_ANON_RSS_OFF={mv['anon_rss']}", f"-DMV_FILE_RSS_OFF={mv['file_rss']}",
                   f"-DMV_SHMEM_RSS_OFF={mv['shmem_rss']}"]
    if "comm" in mv:
        cflags.append(f"-DMV_COMM_LOC_OFF={mv['comm']}")             # __data_loc char[]
    if lean:
        cb_fentry = "the lean configuration has no callback probes"
    return Plan(api, cflags, probes, callbacks_reason, inflight, walk, ring_buffer, probe_ends, cb_fentry, bool(lean))


def _lean(probes, walk, api):
    """probes as the lean configuration has them (see plan())."""
    by = {p.probe: p for p in probes}
    start = by["invalidate_range_start"]
    why = ("" if FENTRY in start.methods else f"no fentry on {start.targets[0] if start.targets else 'it'}: "
           f"{start.reason or 'kprobes only here'}") or walk or ("" if api >= 502 else "range->flags (5.2+) needed")
    if why:
        raise ValueError(f"the lean configuration cannot run here: {why}")
    out = []
    for p in probes:
        if p.probe == "invalidate_range_start":
            p = ProbeSpec(p.probe, p.targets, (LEAN_FEXIT,),
                          {LEAN_FEXIT: (None, "kretfunc____mmu_notifier_invalidate_range_start")}, core=True)
        elif p.probe in LEAN_OFF:
            p = ProbeSpec(p.probe, p.targets, reason=LEAN_OFF[p.probe], core=p.core, off=True)
        out.append(p)
    return out


def _callback_fentry(facts, api, fentry_ok, pinned, why_not_struct):
    """"" if notifier callbacks get fentry/fexit where their BTF allows, else why not.

    A module function's BTF is the module's split BTF (5.11, /sys/kernel/btf/<module>);
    bcc 0.26 cannot load against it, monitor/module_fentry.py does. While attached, the
    kernel holds a reference on the module (its trampoline's): `rmmod` of that module is
    refused until mnmon lets go, which kprobes do not do; callbacks=kprobe keeps every
    module unloadable."""
    if pinned not in (None, FENTRY, KPROBE):
        raise ValueError(f"notifier callbacks are probed by {FENTRY} or {KPROBE}, not {pinned}")
    if pinned == KPROBE:
        return "kprobe chosen by configuration (probes.callbacks)"
    why = why_not_struct
    if not why and not fentry_ok:
        why = "no fentry here (needs BTF, BPF trampolines and bcc support)"
    if not why and (facts.version < (5, 11) or api < 505):
        why = f"kernel {facts.release} predates module BTF (5.11)"
    if why and pinned == FENTRY:
        raise ValueError(f"{FENTRY} forced on notifier callbacks, but {why}")
    return why


def _walk_subscriptions(facts, why_not_struct):
    """"" if the core probes can count every notifier from the mm's subscriptions
    (bpf/attribute.bpf.c), else why not: then a notifier is counted from the moment
    its own callback probes attach."""
    if why_not_struct:
        return why_not_struct
    if facts.version < (5, 6):
        # 5.6 (984cfe4e2526) named the struct mmu_notifier_subscriptions, hung off
        # mm->notifier_subscriptions; the walk reads it by that name.
        return f"kernel {facts.release} predates mm->notifier_subscriptions (5.6)"
    if not {"has_itree", "leftmost"} <= set(facts.subscriptions):
        return "no vmlinux BTF to read the layout of struct mmu_notifier_subscriptions"
    return ""


def _inflight(facts, pinned, structs):
    # Tracing programs may use task-local storage since 5.12 (a10787e6d58c); it needs BTF,
    # and a bcc that declares the map (0.24+). Only struct-reading programs keep records.
    ok = structs and facts.btf and facts.version >= (5, 12) and facts.bcc_task_storage
    if pinned is None:
        return TASK_STORAGE if ok else HASH
    if pinned not in (TASK_STORAGE, HASH):
        raise ValueError(f"in-flight records go in {TASK_STORAGE} or {HASH}, not {pinned}")
    if pinned == TASK_STORAGE and not ok:
        raise ValueError(f"{TASK_STORAGE} needs kernel 5.12+ with BTF and its own headers, and bcc 0.24+")
    return pinned
