"""`mnmon doctor`: what this kernel offers and what mnmon can attach, and how.

    lines, ok = report(facts, plan, tracefs_dir, attach, cgroup2)

attach() compiles and attaches for real and returns (the ProbeStatus list, lines on the
notifier callbacks found; raising MonitorError when it cannot); report() calls it only
when this process may attach; cgroup2 is monitor.read.cgroups.locate()'s answer.
"""
from monitor.attach import latency_windows
from monitor.plan import catalogue
from monitor.plan import coverage
from monitor.kernel.facts import bcc_version
from monitor.attach.session import MonitorError, ProbeStatus


def probed(answer):
    """A probed feature as doctor shows it (monitor/kernel/features.py)."""
    return {True: "yes (probed)", False: "no (probed)", None: "not probed (the version decides)"}[answer]


def facts_lines(f, privileged_as):
    yn = lambda b: "yes" if b else "no"
    return [
        f"kernel       {f.release}",
        f"BTF          {yn(f.btf)}" + (" (/sys/kernel/btf/vmlinux)" if f.btf else " (no fentry, no BTF discovery)"),
        f"kprobes      {yn(f.kprobes)}",
        f"fentry       {'bcc sees BPF trampolines' if f.kfunc else 'no'}",
        f"headers      {f.headers}" + (f": {f.headers_dir}" if f.headers_dir else "") +
        ("" if f.headers == "matching" else " (another kernel's: bcc compiles against them)"
         if f.headers == "other" else ""),
        "layout       " + (f.layout.summary() if f.layout else
                           f"unknown: {f.layout_error or 'no BTF'} (struct-reading probes stay off)"),
        f"tracepoints  {len(f.tracepoints)} of interest: {', '.join(sorted(f.tracepoints)) or 'none'}",
        f"features     ring buffer {probed(f.ringbuf)}, module BTF {probed(f.module_btf)}",
        f"bcc          {bcc_version()}",
        f"privileges   {privileged_as}",
    ] + [f"unreadable   {what}" for what in f.unreadable]


def probe_lines(statuses, cov, attempted):
    """One line per probe: how it attached, or why not; then what is counted (cov, a
    coverage.Coverage). attempted=False: the plan only."""
    out = [f"{'probe':<44} {'method':<14} state"]
    for st in statuses:
        if st.attached:
            state = "attached" if attempted else f"would try {st.method}"
            if st.reason:       # attached by a fallback: why not the first choice
                state += f" ({st.reason})"
        elif st.disabled:
            state = f"off: {st.reason or 'disabled by configuration'}"
        else:
            state = f"unavailable: {st.reason}"
        out.append(f"{st.probe:<44} {st.method or '-':<14} {state}")
    out.append("")
    how = ("fentry where the module has BTF, which holds the module loaded while attached; else kprobe"
           if cov.callback_fentry is None else f"kprobe; not fentry: {cov.callback_fentry.reason}")
    if cov.lean:
        out.append("configuration: lean (one fexit per invalidation): core counts, each notifier's non-blockable "
                   "calls and outcomes, and who blocked the OOM reaper; no latency, ends, counts by event, or "
                   "blockable calls per notifier")
        return out + [premature_line(statuses, cov, attempted)]
    counts = ("an fexit on the start and an fentry on its end: every notifier's calls in both modes and every "
              "result, ends, and the reaper's figures; a failed list notifier named from the kernel's log line")
    if cov.counts and not cov.sampled:
        out.append(f"configuration: counts (latency off; {counts}); no latency histograms")
        return out + [premature_line(statuses, cov, attempted)]
    if cov.timed_always:
        out.append(f"configuration: counts with latency always ({counts}); every callback call timed "
                   f"by the callbacks' own entry and return programs, and the core start by an entry "
                   f"beside its fexit")
    elif cov.sampled:
        out.append(f"configuration: counts with sampled latency ({counts}); callbacks timed in windows of "
                   f"{latency_windows.WINDOW:g} s (at least one discovery interval) every {latency_windows.PERIOD:g} s, "
                   f"at most {latency_windows.MAX_SHARE:.1%} of the time (mnmon_latency_sampled_ratio)")
    tried = [st for st in statuses if st.probe.startswith("notifier:") and st.method != "core"]
    if cov.callbacks:
        callbacks = f"not attachable: {cov.callbacks.reason}"
    elif attempted and tried and not any(st.attached for st in tried):
        callbacks = f"not attachable: none of {len(tried)} attached here ({tried[0].reason})"
    else:
        callbacks = f"attachable ({how}), found in BTF, at registration and in mms' subscriptions"
    out.append("notifier callbacks: " + callbacks)
    if attempted and not cov.counted:
        calls = "not counted by the core probes: they did not attach (see above)"
    elif cov.walk is None:
        calls = "each counted from its first invalidation (the core probes walk each mm's subscriptions)"
    else:
        calls = f"counted from when a callback's probes attach: {cov.walk.reason}"
    out.append("notifier calls: " + calls)
    out.append(premature_line(statuses, cov, attempted))
    return out


def premature_line(statuses, cov, attempted):
    """One line: whether premature OOM victims are counted here, else why not."""
    if cov.measures("mnmon_oom_premature_victims_total"):
        return "premature OOM victims: " + ("countable here" if attempted else "would be countable")
    off = [st for st in statuses if st.probe in catalogue.PREMATURE_PROBES and not st.attached]
    why = off[0].reason if off and off[0].reason else f"{off[0].probe} did not attach" if off else "not planned"
    return "premature OOM victims: not countable: " + why.removeprefix("premature OOM victims not countable: ")


def planned(plan):
    """What the plan would try, as statuses: shown when nothing could be tried."""
    return [ProbeStatus(p.probe, p.methods[0] if p.methods else "", bool(p.methods), p.reason, p.off)
            for p in plan.probes]


def verdict(statuses, cov, attempted):
    """(ok, the closing line): can per-notifier outcomes be counted here (cov.per_notifier)?
    Probes left off by choice do not count against it; only an attach that was tried counts for it."""
    if attempted and cov.per_notifier:
        return True, "per-notifier outcomes: countable here"
    tracepoint = lambda s: getattr(catalogue.BY_NAME.get(s.probe), "kind", None) == catalogue.TRACEPOINT
    if attempted and any(s.attached for s in statuses if tracepoint(s)):
        return False, "per-notifier outcomes: NOT countable here; OOM tracepoint counters only"
    return False, "per-notifier outcomes: NOT countable here"


def report(facts, plan, tracefs_dir, attach, cgroup2):
    """(lines, ok) of `mnmon doctor`."""
    lines = facts_lines(facts, "root or CAP_BPF+CAP_PERFMON" if facts.privileged else "none")
    lines += [tracefs_line(tracefs_dir, facts.unreadable), cgroups_line(*cgroup2), ""]
    statuses, attempted, notes = planned(plan), False, []
    if facts.privileged and facts.headers != "none":
        try:
            statuses, notes = attach()
            attempted = True
        except MonitorError as e:
            lines.append(f"attach failed: {e}")
    else:
        lines.append("not privileged or no headers: showing the plan only (run as root to try it)\n")
    cov = coverage.of(plan, statuses)
    lines += probe_lines(statuses, cov, attempted)
    if plan.latency_note:
        lines.append(plan.latency_note)
    if notes:
        lines += [""] + notes
    ok, last = verdict(statuses, cov, attempted)
    return lines + ["", last], ok


def tracefs_line(tfs, unreadable=()):
    if tfs:
        return f"tracefs      {tfs}"
    if any(u.startswith(("/sys/kernel/tracing", "/sys/kernel/debug")) for u in unreadable):
        return "tracefs      not readable by this user (tracefs is root's)"
    return "tracefs      not mounted (and could not mount it)"



def cgroups_line(mount, root, reason):
    """Where OOM victims' cgroups are named from (the BPF side reads their cgroup2 id)."""
    if mount is None:
        return f"cgroups      victims' cgroup is unknown: {reason}"
    return f"cgroups      cgroup2 at {mount}" + ("" if root == "/" else f" (its {root})") + \
        ": victims named by cgroup, pod and container"
