"""What this run measures: computed once, when the probes have attached, from the plan and
what attached; readers, doctor, the CLI and bench read it instead of re-deriving it.

Series are exported only where measured: a 0 would say "never happened" where the truth
is "not watched" (mnmon_probe_attached says why).
"""
from dataclasses import dataclass
from typing import Optional

from monitor import catalogue
from monitor.decisions import Block, Off


@dataclass(frozen=True)
class Coverage:
    counted: bool                   # starts by mode and result, each notifier's calls (the core start attached)
    timed: bool                     # latency of the core start (and of callbacks, where probed)
    ends: bool                      # invalidate_range_end calls, and sections in progress
    walked: bool                    # each notifier counted from its first call (the walk of subscriptions)
    lean: bool                      # the lean configuration
    per_notifier: bool              # per-notifier outcomes can be counted (doctor's exit status)
    callbacks: Optional[Block]      # None: callback probes attach as callbacks are found; else why not
    callback_fentry: Optional[Block]    # None: by fentry where their module has BTF; else why kprobe only
    walk: Optional[Block]           # why not walked
    feeds: frozenset                # (family, result or None) measured

    def measures(self, family, result=None):
        """Whether the series of family (with that result label, where given) are measured."""
        return (family, None) in self.feeds or (result is not None and (family, result) in self.feeds)


def of(plan, statuses):
    """The Coverage of a plan whose probes attached as statuses ({probe: ProbeStatus} or a list)."""
    return measure(statuses.values() if isinstance(statuses, dict) else statuses, lean=plan.lean,
                   specs=plan.probes, walk=plan.walk_off, callbacks=plan.callbacks_off,
                   callback_fentry=plan.callback_fentry_off)


def measure(statuses, lean=False, specs=None, walk=None, callbacks=None, callback_fentry=None):
    """Coverage from statuses alone (specs: the plan's ProbeSpecs, else the catalogue's rows).
    No statuses at all (a caller with maps only, no attach): every OOM family, no core one."""
    statuses = list(statuses)
    feeds_of = {s.probe: s.feeds for s in specs} if specs is not None else {
        r.name: (r.lean_feeds if lean and r.lean_feeds is not None else r.feeds) for r in catalogue.ROWS}
    if not statuses:
        attached = {r.name for r in catalogue.ROWS if not r.core}
    else:
        attached = {st.probe for st in statuses if st.attached}
    by = {st.probe: st for st in statuses}
    counted = "invalidate_range_start" in attached
    end = by.get("invalidate_range_end")
    end_ok = end is not None and (end.attached or getattr(end, "disabled", False))   # left off by choice
    return Coverage(
        counted=counted, timed=counted and not lean, ends="invalidate_range_end" in attached,
        walked=counted and walk is None, lean=bool(lean),
        per_notifier=counted and end_ok and callbacks is None,
        callbacks=Block(Off.LEAN, "the lean configuration has no callback probes") if lean else callbacks,
        callback_fentry=callback_fentry, walk=walk,
        feeds=frozenset(f for p in attached for f in feeds_of.get(p, ())))
