"""Attach and detach a started Monitor's probes by group, without compiling again.

bcc compiles for tens of seconds under emulation, so the benchmark loads the
program once per attach method and toggles attachment between runs: a loaded,
unattached BPF program costs the kernel nothing, so "detached" is "without mnmon".

Groups:
    core        invalidate_range_start/_end (fentry/fexit or kprobes)
    callbacks   each notifier's callback kprobes (notifier:*)
    other       the rest: registration kprobes, the OOM probes and tracepoints
"""
from monitor import attach_plan, probes

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
        self.callbacks = [cb for (cb, _) in mon.callbacks.values()
                          if mon.statuses.get(f"notifier:{cb.symbol}") and
                          mon.statuses[f"notifier:{cb.symbol}"].attached]

    def set(self, groups):
        """Attach exactly the probes of groups (an iterable of GROUPS names)."""
        groups = set(groups)
        for g in GROUPS:
            if g in self.on and g not in groups:
                self._switch(g, False)
            elif g not in self.on and g in groups:
                self._switch(g, True)
        self.on = groups

    def _switch(self, group, attach):
        bpf = self.mon.bpf
        for g, method, targets, entry, ret in self.probes:
            if g != group:
                continue
            order = probes.attach_order(entry, ret)
            for target in targets:
                for fn, is_ret in (order if attach else order[::-1]):    # entries go first, come last
                    if fn:
                        (probes._attach_one if attach else probes._detach_one)(bpf, method, target, fn, is_ret)
        if group != "callbacks":
            return
        for cb in self.callbacks:
            if attach:
                # attach_callback() skips what it knows: forget it first.
                self.mon.callbacks.pop((cb.symbol, cb.module), None)
                st = self.mon.attach_callback(cb)
                if not (st and st.attached):
                    raise RuntimeError(f"re-attaching {cb.symbol}: {st}")
            else:
                for detach in (bpf.detach_kprobe, bpf.detach_kretprobe):
                    try:
                        detach(event=cb.symbol)
                    except Exception:       # a list_end callback has no kretprobe
                        pass
