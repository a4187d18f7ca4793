"""What to attach on this kernel, and how: the one place where that is decided.

plan(facts) is pure, so the kernel generations this project cannot boot are
covered by tests of it (tests/unit/test_attach_plan.py). The probes themselves are
rows of monitor/plan/catalogue.py; plan() keeps the rows this kernel has and says, for
each, how it attaches or why not (decisions.Off, with a reason to read).
"""
from dataclasses import dataclass, field
from typing import Optional

from monitor.plan import catalogue
from monitor.plan.catalogue import (ATTEMPT_COUNT, COUNTS_FEXIT, FENTRY, FUNCTION, INTERVAL_API, KPROBE,  # noqa: F401
                               LEAN_FEXIT, LOG_ARGS, NONBLOCK_API, OOM_DOMAIN, RAW_TRACEPOINT, STRUCTS,
                               TASK_FIELDS, TRACEPOINT, VICTIM_TASK, WALK)
from monitor.kernel import layout
from monitor.plan.decisions import Block, Off

# Where a thread's in-flight invalidation is kept (bpf/mnmon.bpf.c, TASK_STORAGE).
TASK_STORAGE, HASH = "task-storage", "hash"
LEAN = "off in the lean configuration: "
# The configurations (plan()): every probe, or one of the two without callback probes.
FULL, COUNTS, LEAN_CONFIG = "full", "counts", "lean"
# probes.latency: callbacks timed in windows over counts, always over counts, never (counts),
# or every probe (full: the core start timed too, each callback's outcome from its own probe)
LATENCIES = ("sampled", "always", "off", "full")
TIMED = ("sampled", "always")       # the counts configuration with the callbacks' timing probes
OFF_IN = {LEAN_CONFIG: (Off.LEAN, LEAN), COUNTS: (Off.COUNTS, "off with latency off (probes.latency: off): "),
          FULL: (Off.CONFIG, "")}


@dataclass(frozen=True)
class ProbeSpec:
    """One probe users see in `mnmon doctor` and mnmon_probe_attached{probe}."""
    probe: str
    targets: tuple                 # functions or 'category:event' tracepoints
    methods: tuple = ()            # preferred first; empty: off, see off and reason
    programs: dict = field(default_factory=dict, compare=False)   # method -> (entry, return)
    reason: str = ""               # for people: why off, or why a fallback stands in
    core: bool = False             # needed for per-notifier outcomes (doctor's exit status)
    off: Optional[Off] = None      # why it will not attach (None: it will try its methods)
    feeds: tuple = ()              # (family, result) it measures when attached (catalogue.Row.feeds)


@dataclass
class Plan:
    api: int
    cflags: list
    probes: list
    callbacks_off: Optional[Block] = None   # why per-notifier callback probes cannot attach at all
    inflight: str = HASH                    # TASK_STORAGE or HASH
    walk_off: Optional[Block] = None        # why the core probes cannot count every notifier from its first call
    ring_buffer: bool = True                # rare events through a BPF ring buffer, else a perf buffer
    probe_ends: bool = True                 # invalidate_range_end callbacks need probes (else the core counts them)
    # why notifier callbacks are not probed by fentry/fexit where their module has BTF (kprobes only)
    callback_fentry_off: Optional[Block] = None
    lean: bool = False                      # the lean configuration (see plan())
    counts: bool = False                    # the counts configuration: latency sampled, always or off (see plan())
    sampled: bool = False                   # ... with the callbacks' timing probes (latency sampled or always)
    timed_always: bool = False              # ... attached all the time (probes.latency: always), not in windows
    latency_note: str = ""                  # why latency sampled or always runs every probe instead
    facts: dict = field(default_factory=dict)   # feature -> "probed" or "kernel version": how it was known

    @property
    def kprobe_twins(self):
        """Whether the kprobe flavour of the probes that have an fentry one is compiled.
        It doubles the compile (the walk is the biggest code), so it is left out where every
        such probe prefers fentry; a start whose fentry then fails compiles again with it."""
        return "-DKPROBE_TWINS=1" in self.cflags

    def fallbacks(self, statuses):
        """{probe: KPROBE} for probes whose fentry failed where their kprobe flavour was
        not compiled: what a second compile must force."""
        if self.kprobe_twins:
            return {}
        return {p.probe: KPROBE for p in self.probes
                if p.methods[:1] == (FENTRY,) and KPROBE in p.methods and not statuses[p.probe].attached
                and not statuses[p.probe].disabled}


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


def plan(facts, force=None, inflight=None, callbacks=None, lean=False, latency="full"):
    """The probes to attach on a kernel described by facts (monitor.kernel.facts.KernelFacts).

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
    latency: "sampled" (the default for users): the counts configuration below, with the
    callbacks' timing probes attached in windows (monitor/attach/latency_windows.py);
    "always": the same with the timing probes attached all the time; where counts cannot
    run, either is every probe (full), and latency_note says why. "full": every probe, the
    core start timed too and each callback's outcome from its own probe (which of several
    overlapping interval notifiers failed). "off": the counts configuration,
    an fexit on the core start and an fentry on its end, nothing else on the invalidation
    path. The walk counts every notifier's calls in both modes and every result, the ends
    and the reaper's figures; the kernel's log line names a failed list notifier. Dropped:
    every latency histogram, callback probes, and which of several overlapping interval
    notifiers failed (result="unobserved"). ValueError where it cannot run, as lean.
    """
    if latency not in LATENCIES:
        raise ValueError(f"latency must be {', '.join(LATENCIES)}, not {latency!r}")
    config = LEAN_CONFIG if lean else FULL if latency == "full" else COUNTS
    force = dict(force or {})
    if bad := sorted(f"{p}={m}" for p, m in force.items() if m not in (FENTRY, KPROBE)):
        raise ValueError(f"cannot force {', '.join(bad)}: only {FENTRY} or {KPROBE} can be forced")
    api = api_generation(facts.version)
    caps = capabilities(facts, api)
    structs = caps[STRUCTS]
    fentry_ok = facts.kfunc and facts.btf and facts.version >= (5, 5)
    probes = [_probe(row, facts, caps, fentry_ok, force) for row in catalogue.ROWS
              if not any(caps[c] for c in row.omit_without)]
    if force:
        raise ValueError(f"cannot force a method on {', '.join(sorted(force))}: not a function probe here")
    latency_note = ""
    sampled = config == COUNTS and latency in TIMED
    try:
        probes = _configure(probes, caps[WALK], api, config, sampled, always=sampled and latency == "always")
    except ValueError as e:
        if lean or latency not in TIMED:
            raise
        # Timed latency rides on the counts configuration; where that cannot run, every
        # probe does: counts as ever, latency continuous.
        why = str(e).split(" cannot run here: ", 1)[-1]
        config, sampled = FULL, False
        latency_note = f"latency {latency} needs the counts configuration, which cannot run here " \
                       f"({why}): every probe runs, callbacks timed always"
        probes = _configure(probes, caps[WALK], api, config)
    probes = _premature(probes)
    by = {p.probe: p for p in probes}
    walk = caps[WALK]
    cb_fentry = _callback_fentry(facts, api, fentry_ok, callbacks, structs)
    callbacks_off = structs
    if not structs and not facts.kprobes and cb_fentry:
        callbacks_off = Block(Off.KERNEL, f"no kprobes on this kernel (CONFIG_KPROBES off), and no fentry on "
                                          f"callbacks: {cb_fentry}")
    ring_buffer, _ = _feature(facts.ringbuf, facts.version >= (5, 8))   # BPF ring buffer: 5.8 (457f44363a88)
    ends_paired = facts.version >= (5, 10)
    # The walk counts every end; an end probe is then needed only to check pairing, which
    # kernels with c2655835fd8c guarantee.
    probe_ends = (walk is not None or not ends_paired) and config == FULL
    inflight = _inflight(facts, inflight, structs=structs is None)
    if config != FULL and not sampled:
        cb_fentry = no_callbacks(config)
    return Plan(api, _cflags(facts, api, by, caps, ring_buffer, inflight, ends_paired, cb_fentry, config, sampled),
                probes, callbacks_off, inflight, walk, ring_buffer, probe_ends, cb_fentry, config == LEAN_CONFIG,
                config == COUNTS, sampled, sampled and latency == "always", latency_note, _known_by(facts))


def no_callbacks(config):
    """Why a configuration without callback probes has none."""
    if config == LEAN_CONFIG:
        return Block(Off.LEAN, "the lean configuration has no callback probes")
    return Block(Off.COUNTS, "latency off (probes.latency: off): the walk counts every call, no callback probes")


def _known_by(facts):
    """How each version-sensitive feature was known: probed on the kernel, or its version."""
    return {"ring_buffer": _feature(facts.ringbuf, None)[1], "module_btf": _feature(facts.module_btf, None)[1],
            "task_storage": "kernel version"}     # see _inflight: only loading a tracing program could tell


def capabilities(facts, api):
    """{catalogue capability: None where this kernel has it, else the Block saying why not}."""
    predates = Block(Off.KERNEL, f"kernel {facts.release} predates non-blockable invalidation (4.19)")
    notifier_groups = (layout.RANGE, layout.LIST) + ((layout.INTERVAL,) if api >= 505 else ())
    structs = predates if api == 0 else _fields(facts, *notifier_groups)
    task = predates if api == 0 else _fields(facts, layout.TASK)
    victim_task = _fields(facts, layout.TASK, layout.CGROUP)
    if not victim_task and not ("comm" in facts.mark_victim_fields and "oom:mark_victim" in facts.tracepoints):
        victim_task = Block(Off.KERNEL, "oom:mark_victim passes no task here")
    oom_domain = predates if api == 0 else _fields(facts, layout.TASK, layout.CGROUP, layout.OOM_DOMAIN)
    log_args = None if facts.machine == "x86_64" else Block(Off.KERNEL, f"reads printk's arguments as x86-64 "
                                                                         f"passes them, not {facts.machine}'s")
    return {STRUCTS: structs, NONBLOCK_API: predates if api == 0 else None, OOM_DOMAIN: oom_domain,
            LOG_ARGS: log_args,
            INTERVAL_API: None if api >= 505 else Block(Off.KERNEL, "interval notifiers are 5.5+"),
            WALK: _walk_subscriptions(facts, structs), TASK_FIELDS: task, VICTIM_TASK: victim_task}


def _fields(facts, *groups):
    """None if the BPF may read the fields of groups (monitor/kernel/layout.py), else why not."""
    if facts.headers == "none":
        return Block(Off.HEADERS, "no kernel headers for this kernel")
    found = _layout(facts)
    if found is None:
        return Block(Off.HEADERS, f"headers at {facts.headers_dir} are not this kernel's, and "
                                  f"{facts.layout_error or 'no BTF'}: struct offsets unknown")
    lacks = found.lacks(*groups)
    return Block(Off.KERNEL, f"field not on this kernel: {lacks}") if lacks else None


def _layout(facts):
    """The layout the BPF compiles with: facts.layout, else (not read) the headers' own if theirs."""
    return facts.layout or (layout.headers_only() if facts.headers == "matching" else None)


def _probe(row, facts, caps, fentry_ok, force):
    """A catalogue row as this kernel can attach it."""
    spec = lambda targets=row.targets, methods=(), reason="", off=None: ProbeSpec(
        row.name, targets, methods, row.programs if methods else {}, reason, row.core, off, row.feeds)
    if row.kind != FUNCTION:
        there = row.kind == RAW_TRACEPOINT or row.targets[0] in facts.tracepoints
        return spec(methods=(row.kind,)) if there else spec(
            off=Off.KERNEL, reason="could not read tracefs (root's)" if not facts.tracefs_readable else
            "tracepoint not in tracefs (kernel too old or tracefs not mounted)")
    forced = force.pop(row.name, None)
    out = _function_probe(row, facts, caps, fentry_ok, forced, spec)
    if not out.methods and row.fallback:
        targets, method = row.fallback
        # A stand-in that attaches says why the probe itself did not (its reason).
        return ProbeSpec(row.name, targets, (method,) if targets[0] in facts.tracepoints else (),
                         {}, out.reason, row.core, None if targets[0] in facts.tracepoints else out.off, row.feeds)
    return out


def _function_probe(row, facts, caps, fentry_ok, forced, spec):
    for need in row.needs:
        if need != STRUCTS and caps[need]:
            return spec(off=caps[need].off, reason=caps[need].reason)
    missing = [t for t in row.targets if t not in facts.symbols]
    if len(missing) == len(row.targets):
        if not facts.kallsyms_readable:      # not known to be missing: not seen
            return spec(off=Off.KERNEL, reason="could not read /proc/kallsyms (needs root or CAP_SYSLOG)")
        return spec(off=Off.KERNEL, reason=f"{', '.join(missing)} not in kallsyms (inlined, static or not built)")
    targets = tuple(t for t in row.targets if t not in missing)
    if STRUCTS in row.needs and caps[STRUCTS]:
        also = "" if facts.kprobes else "; also no kprobes (CONFIG_KPROBES off)"
        return spec(targets, off=caps[STRUCTS].off, reason=caps[STRUCTS].reason + also)
    methods = [m for m, ok in ((FENTRY, fentry_ok), (KPROBE, facts.kprobes)) if ok and m in row.programs]
    if not methods:
        reason = "no kprobes on this kernel (CONFIG_KPROBES off)"
        if FENTRY in row.programs:
            reason += ", and no fentry (needs 5.5+, BTF and BPF trampolines)"
        return spec(targets, off=Off.KERNEL, reason=reason)
    if forced:
        if forced not in methods:
            return spec(targets, off=Off.KERNEL,
                        reason=f"{forced} forced, but only {', '.join(methods)} can attach it here")
        methods = [forced]
    return spec(targets, tuple(methods))


def _cflags(facts, api, by, caps, ring_buffer, inflight, ends_paired, cb_fentry, config, sampled=False):
    """The compile's -D settings (bpf/mnmon.bpf.c) for this plan."""
    mv, walk = facts.mark_victim_fields, caps[WALK]
    out = [
        f"-DMN_API={api or 419}",
        f"-DHAVE_STRUCTS={0 if caps[STRUCTS] else 1}",
        f"-DCGROUP_FIELDS={int(not _fields(facts, layout.CGROUP))}",
        f"-DCORE_KFUNC={int(bool({FENTRY, LEAN_FEXIT, COUNTS_FEXIT} & set(by['invalidate_range_start'].methods)))}",
        f"-DREAP_KFUNC={int(FENTRY in by['oom_reap_task_mm'].methods)}",
        f"-DGAVE_UP_PROBE={int(KPROBE in by['oom_reaper_gave_up'].methods)}",
        f"-DUSE_RINGBUF={int(ring_buffer)}",
        f"-DTASK_STORAGE={int(inflight == TASK_STORAGE)}",
        f"-DMN_SUBS={int(not walk)}",
        f"-DMV_TASK_ARG={int(not caps[VICTIM_TASK])}",
        f"-DPREMATURE={int(by['mm_teardown'].methods != ())}",
        # c2655835fd8c (5.12, in 5.10.y): a failed list pass ends every list notifier itself.
        f"-DENDS_IN_FAILED_START={int(ends_paired)}",
        # fentry programs for notifier callbacks (timing only in the counts configuration)
        f"-DCB_KFUNC={int(not cb_fentry and (config == FULL or sampled))}",
        f"-DLEAN={int(config == LEAN_CONFIG)}",
        f"-DKPROBE_TWINS={int(any(p.methods[:1] == (KPROBE,) and FENTRY in p.programs for p in by.values()))}",
        f"-DCOUNTS={int(config == COUNTS)}",
        f"-DTIME_START={int(bool(by['invalidate_range_start'].programs.get(COUNTS_FEXIT, (None,))[0]))}",
        f"-DFAILURE_LOG={int('list_failure_log' in by and bool(by['list_failure_log'].methods))}",
    ]
    out += _layout(facts).cflags() if _layout(facts) else ["-DBTF_LAYOUT=0"]
    if all(k in mv for k in ("anon_rss", "file_rss", "shmem_rss")):     # oom:mark_victim, 6.9+
        out += [f"-DMV_ANON_RSS_OFF={mv['anon_rss']}", f"-DMV_FILE_RSS_OFF={mv['file_rss']}",
                f"-DMV_SHMEM_RSS_OFF={mv['shmem_rss']}"]
    if "comm" in mv:
        out.append(f"-DMV_COMM_LOC_OFF={mv['comm']}")             # __data_loc char[]
    return out


def _configure(probes, walk, api, config, sampled=False, always=False):
    """probes as a configuration has them (see plan()); ValueError where lean or counts cannot run.
    sampled: counts with callbacks timed in windows, which keeps the probes that find callbacks;
    always: ... timed all the time, the core start too."""
    start = next(p for p in probes if p.probe == "invalidate_range_start")
    if config == FULL:
        why = None
    elif FENTRY not in start.methods:
        why = f"no fentry on {start.targets[0] if start.targets else 'it'}: {start.reason or 'kprobes only here'}"
    elif walk is not None:
        why = walk.reason
    elif api < 502:
        why = "range->flags (5.2+) needed"
    else:
        why = None
    if why is not None:
        name = "the lean configuration" if config == LEAN_CONFIG else "latency off (probes.latency: off)"
        raise ValueError(f"{name} cannot run here: {why}")
    off, prefix = OFF_IN[config]
    out = []
    for p in probes:
        row = catalogue.BY_NAME[p.probe]
        if config == FULL and row.full_off:
            continue        # not a probe of this configuration: no series says it is off
        programs = (always and row.always_programs) or getattr(row, f"{config}_programs", None)
        dropped = "" if sampled and row.discovers else getattr(row, f"{config}_off", "")
        if programs:
            p = ProbeSpec(p.probe, p.targets, tuple(programs), programs, core=p.core,
                          feeds=(always and row.always_feeds) or (sampled and row.sampled_feeds)
                          or getattr(row, f"{config}_feeds"))
        elif dropped:
            p = ProbeSpec(p.probe, p.targets, reason=prefix + dropped, core=p.core, off=off, feeds=p.feeds)
        out.append(p)
    return out


def _premature(probes):
    """probes, with the premature-victim probes off (and why) where any probe the figure
    needs cannot attach: it is then not countable, never a 0 (bpf/premature.bpf.c)."""
    by = {p.probe: p for p in probes}
    lacking = [f"{name}: {by[name].reason or 'not planned'}" if name in by else f"{name}: not on this kernel"
               for name in catalogue.PREMATURE_PROBES if name not in by or not by[name].methods]
    if not lacking:
        return probes
    why = "premature OOM victims not countable: " + "; ".join(lacking)
    return [ProbeSpec(p.probe, p.targets, reason=why, core=p.core, off=p.off or Off.KERNEL, feeds=p.feeds)
            if p.probe in ("oom_domain", "mm_teardown") else p for p in probes]


def _callback_fentry(facts, api, fentry_ok, pinned, structs):
    """None if notifier callbacks get fentry/fexit where their BTF allows, else the Block.

    A module function's BTF is the module's split BTF (5.11, /sys/kernel/btf/<module>);
    bcc 0.26 cannot load against it, monitor/attach/module_fentry.py does. While attached, the
    kernel holds a reference on the module (its trampoline's): `rmmod` of that module is
    refused until mnmon lets go, which kprobes do not do; callbacks=kprobe keeps every
    module unloadable."""
    if pinned not in (None, FENTRY, KPROBE):
        raise ValueError(f"notifier callbacks are probed by {FENTRY} or {KPROBE}, not {pinned}")
    if pinned == KPROBE:
        return Block(Off.CONFIG, "kprobe chosen by configuration (probes.callbacks)")
    why = structs
    if not why and not fentry_ok:
        why = Block(Off.KERNEL, "no fentry here (needs BTF, BPF trampolines and bcc support)")
    module_btf, _ = _feature(facts.module_btf, facts.version >= (5, 11))
    if not why and (not module_btf or api < 505):
        why = Block(Off.KERNEL, f"kernel {facts.release} has no module BTF (5.11+)" if facts.module_btf is False
                    else f"kernel {facts.release} predates module BTF (5.11)")
    if why and pinned == FENTRY:
        raise ValueError(f"{FENTRY} forced on notifier callbacks, but {why.reason}")
    return why


def _walk_subscriptions(facts, structs):
    """None if the core probes can count every notifier from the mm's subscriptions
    (bpf/attribute.bpf.c), else the Block: then a notifier is counted from the moment
    its own callback probes attach."""
    if structs:
        return structs
    if facts.version < (5, 6):
        # 5.6 (984cfe4e2526) named the struct mmu_notifier_subscriptions, hung off
        # mm->notifier_subscriptions; the walk reads it by that name.
        return Block(Off.KERNEL, f"kernel {facts.release} predates mm->notifier_subscriptions (5.6)")
    found = _layout(facts)
    lacks = found.lacks(layout.WALK, layout.INTERVAL)
    return Block(Off.KERNEL, f"field not on this kernel: {lacks}" if found.source == layout.BTF_SOURCE
                 else lacks) if lacks else None


def _feature(probed, by_version):
    """(whether the kernel has a feature, how that is known): what was probed on it, else
    (not probed: no privileges, or facts from elsewhere) its version's default."""
    if probed is None:
        return by_version, "kernel version"
    return probed, "probed"


def _inflight(facts, pinned, structs):
    # Tracing programs may use task-local storage since 5.12 (a10787e6d58c); it needs BTF,
    # and a bcc that declares the map (0.24+). Only struct-reading programs keep records.
    # By version: the map type exists from 5.11 for LSM programs only, so creating one
    # does not tell whether a tracing program may use it; only loading one would.
    ok = structs and facts.btf and facts.version >= (5, 12) and facts.bcc_task_storage
    if pinned is None:
        return TASK_STORAGE if ok else HASH
    if pinned not in (TASK_STORAGE, HASH):
        raise ValueError(f"in-flight records go in {TASK_STORAGE} or {HASH}, not {pinned}")
    if pinned == TASK_STORAGE and not ok:
        raise ValueError(f"{TASK_STORAGE} needs kernel 5.12+ with BTF, struct offsets known, and bcc 0.24+")
    return pinned
