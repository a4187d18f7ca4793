"""What this run measures: computed once, when the probes have attached, from the plan and
what attached; readers, doctor, the CLI and bench read it instead of re-deriving it.

Series are exported only where measured: a 0 would say "never happened" where the truth
is "not watched" (mnmon_probe_attached says why).
"""
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

from monitor.plan import attach_plan, catalogue
from monitor.plan.decisions import Block


@dataclass(frozen=True)
class Coverage:
    counted: bool                   # starts by mode and result, each notifier's calls (the core start attached)
    timed: bool                     # latency of the core start (and of callbacks, where probed)
    ends: bool                      # invalidate_range_end calls, and sections in progress
    walked: bool                    # each notifier counted from its first call (the walk of subscriptions)
    lean: bool                      # the lean configuration
    counts: bool                    # the counts configuration (latency sampled, always or off)
    sampled: bool                   # ... with the callbacks' timing probes (probes.latency: sampled or always)
    timed_always: bool              # ... attached all the time, not in windows (probes.latency: always)
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
                   callback_fentry=plan.callback_fentry_off, counts=plan.counts,
                   sampled=getattr(plan, "sampled", False), always=getattr(plan, "timed_always", False))


def measure(statuses, lean=False, specs=None, walk=None, callbacks=None, callback_fentry=None, counts=False,
            sampled=False, always=False):
    """Coverage from statuses alone (specs: the plan's ProbeSpecs, else the catalogue's rows).
    No statuses at all (a caller with maps only, no attach): every OOM family, no core one."""
    statuses = list(statuses)
    if specs is None:       # the catalogue's rows as a plan would have them
        config_feeds = lambda r: r.lean_feeds if lean else r.counts_feeds if counts else None
        specs = [SimpleNamespace(probe=r.name, core=r.core, feeds=config_feeds(r) or r.feeds)
                 for r in catalogue.ROWS]
    feeds_of = {s.probe: s.feeds for s in specs}
    if not statuses:
        attached = {r.name for r in catalogue.ROWS if not r.core}
    else:
        attached = {st.probe for st in statuses if st.attached}
    whole = lambda p: all(q in attached for q in getattr(catalogue.BY_NAME.get(p), "with_probes", ()))
    feeds = frozenset(f for p in attached if whole(p) for f in feeds_of.get(p, ()))
    by = {st.probe: st for st in statuses}
    counted = ("mnmon_invalidate_range_start_total", None) in feeds
    # Per-notifier outcomes need every core probe: attached, or left off by choice (the
    # lean configuration's end: outcomes are then the start's own).
    core = all(s.probe in by and (by[s.probe].attached or getattr(by[s.probe], "disabled", False))
               for s in specs if s.core)
    # lean and counts probe no callbacks, by choice: their outcomes are the walk's (sampled
    # latency times callbacks in windows, and counts none of their calls)
    per_notifier = counted and core and callbacks is None
    if lean or counts and not sampled:
        callbacks = attach_plan.no_callbacks(attach_plan.LEAN_CONFIG if lean else attach_plan.COUNTS)
    return Coverage(
        counted=counted, timed=counted and (not lean and not counts or bool(sampled and always)),
        ends=("mnmon_invalidate_range_end_total", None) in feeds,
        walked=counted and walk is None, lean=bool(lean), counts=bool(counts), sampled=bool(counts and sampled),
        timed_always=bool(counts and sampled and always),
        per_notifier=per_notifier, callbacks=callbacks,
        callback_fentry=callback_fentry, walk=walk, feeds=feeds)
