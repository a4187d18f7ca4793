"""Attach and detach a started Monitor's probes by group, without compiling again.

bcc compiles for tens of seconds under emulation, so the benchmark loads the
program once per attach method and toggles attachment between runs: a loaded,
unattached BPF program costs the kernel nothing, so "detached" is "without mnmon".

Groups (monitor/plan/catalogue.py's, per probe):
    core        invalidate_range_start/_end (fentry/fexit or kprobes)
    callbacks   each notifier's callback probes (notifier:*), by fentry or kprobe as attached
    other       the rest: registration kprobes, the OOM probes and tracepoints
"""
import os

from monitor.attach import probe as attach
from monitor.plan import attach_plan
from monitor.plan import catalogue

GROUPS = ("core", "callbacks", "other")
ALL = frozenset(GROUPS)
group_of = catalogue.group


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
        # [callback, method, its address, its fentry links while attached]
        self.callbacks = [[p.callback, p.status.method, p.addr, list(p.links)] for p in mon.callbacks.values()
                          if p.status.attached and p.status.method in (attach_plan.KPROBE, attach_plan.FENTRY)]

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
                        (reattach if on else attach.detach)(bpf, method, target, fn, is_ret)
        if group != "callbacks":
            return
        # Off, the core probes' walk of subscriptions is what counts each notifier's calls
        # (the lean configuration); the watcher's records stay as they were.
        mf = self.mon.watcher.mf
        for entry in self.callbacks:
            cb, method, addr, links = entry
            if method == attach_plan.FENTRY:
                if on:
                    entry[3] = attach.attach_callback_fentry(mf, bpf, cb.kind_name, cb.symbol, cb.module, addr)
                else:
                    for link in links:
                        mf.detach(link)
                    entry[3] = []
            elif on:
                attach.attach_callback(bpf, cb.kind_name, cb.symbol)
            else:
                attach.detach_callback(bpf, cb.kind_name, cb.symbol)


def reattach(bpf, method, target, fn, is_ret):
    """attach.attach() a program detached before. Kernels without re-attachable tracing
    programs (5.10: the first link took the program's trampoline with it, and a second
    attach fails with ENOENT) get the fentry/fexit program loaded afresh: same code, same
    maps, a new program."""
    try:
        attach.attach(bpf, method, target, fn, is_ret)
    except Exception:      # noqa: BLE001 -- bcc raises bare Exception
        if method not in (attach_plan.FENTRY, attach_plan.LEAN_FEXIT, attach_plan.COUNTS_FEXIT):
            raise
        name = fn.encode() if isinstance(fn, str) else fn
        name = name if name.startswith((b"kfunc__", b"kretfunc__")) else (b"kretfunc__" if is_ret else b"kfunc__") + name
        spent = bpf.funcs.pop(name, None)
        if spent is None:
            raise
        os.close(spent.fd)
        attach.attach(bpf, method, target, fn, is_ret)
