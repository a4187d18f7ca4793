"""Attach and detach a started Monitor's probes by group, without compiling again.

bcc compiles for tens of seconds under emulation, so the benchmark loads the
program once per attach method and toggles attachment between runs: a loaded,
unattached BPF program costs the kernel nothing, so "detached" is "without mnmon".

Groups:
    core        invalidate_range_start/_end (fentry/fexit or kprobes)
    callbacks   each notifier's callback kprobes (notifier:*)
    other       the rest: registration kprobes, the OOM probes and tracepoints
"""
from monitor import attach, attach_plan

GROUPS = ("core", "callbacks", "other")
ALL = frozenset(GROUPS)


def group_of(probe):
    if probe in ("invalidate_range_start", "invalidate_range_end"):
        return "core"
    if probe.startswith("notifier:"):
        return "callbacks"
    return "other"


class Toggle:
    """What mon had attached at construction, switched on and off by group."""

    def __init__(self, mon):
        self.mon = mon
        self.on = set(GROUPS)
        specs = {s.probe: s for s in mon.plan.probes}
        # (group, method, targets, entry, ret) of every probe that attached
        self.probes = []
        for st in mon.statuses.values():
            if not st.attached or st.method == attach_plan.ATTEMPT_COUNT:
                continue
            if st.probe in specs:
                spec = specs[st.probe]
                entry, ret = spec.programs[st.method]
                self.probes.append((group_of(st.probe), st.method, spec.targets, entry, ret))
        self.callbacks = [p.callback for p in mon.callbacks.values()
                          if p.status.attached and p.status.method == attach_plan.KPROBE]

    def set(self, groups):
        """Attach exactly the probes of groups (an iterable of GROUPS names)."""
        groups = set(groups)
        for g in GROUPS:
            if g in self.on and g not in groups:
                self._switch(g, False)
            elif g not in self.on and g in groups:
                self._switch(g, True)
        self.on = groups

    def _switch(self, group, on):
        bpf = self.mon.bpf
        for g, method, targets, entry, ret in self.probes:
            if g != group:
                continue
            order = attach.attach_order(entry, ret)
            for target in targets:
                for fn, is_ret in (order if on else order[::-1]):    # entries go first, come last
                    if fn:
                        (attach.attach if on else attach.detach)(bpf, method, target, fn, is_ret)
        if group != "callbacks":
            return
        # Off, the core probes' walk of subscriptions is what counts each notifier's calls
        # (the lean configuration); the watcher's records stay as they were.
        for cb in self.callbacks:
            if on:
                attach.attach_callback(bpf, cb.kind_name, cb.symbol)
            else:
                attach.detach_callback(bpf, cb.kind_name, cb.symbol)
