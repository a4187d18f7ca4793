"""Overhead on the invalidation path: one loop, mnmon's probes detached and attached.

States (groups of bench.toggle attached):
    off        nothing: the kernel as it is without mnmon
    core       the core start/end probes, and the probes that never fire on this
               path (registration, OOM)
    full       also the per-notifier callback probes: mnmon as it runs

Runs are interleaved, in state order off..full then full..off on alternate
repetitions, and each repetition runs every mode once per state, so slow drift of
a shared machine falls on every state alike. Figures are medians over repetitions.
Under emulation, patching kernel text (attaching) throws away translated code, so
each state change is followed by an untimed warm-up run of every mode.
"""
import os
import statistics
import time
from dataclasses import dataclass, field

from bench import bpfstats, churn, watchdog
from bench.toggle import ALL, Toggle

STATES = {"off": frozenset(), "core": frozenset({"core", "other"}), "full": ALL}
WARMUP = 500
# Attaching and detaching finish after the calls return: kprobes are optimised into jumps
# by a delayed work (kprobe_optimizer, behind an RCU-tasks grace period), trampolines and
# detached programs are freed after grace periods. A run started meanwhile counts that
# work (a run 10 % over its repetitions) and the int3 path: wait it out.
SETTLE_S = 2.0

# The callbacks each mode's notifier calls, as mnmon names them.
CALLBACKS = {
    "kvm": ("kvm_mmu_notifier_invalidate_range_start", "kvm_mmu_notifier_invalidate_range_end"),
    "list": ("mnmon_fx_list_never_fail_start", "mnmon_fx_list_never_fail_end"),
    "interval": ("mnmon_fx_interval_never_fail",),
}
LABELS = {"kvm": "KVM guest memory", "list": "fixture list notifier", "interval": "fixture interval notifier"}


def label(mode):
    pages = churn.pages(mode)
    kib = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    return LABELS[churn.notifier(mode)] + (f", {pages}-page invalidations ({kib} KiB)" if pages > 1 else "")


@dataclass
class ModeResult:
    mode: str
    method: str                                   # how the core probes attached
    ns: dict = field(default_factory=dict)        # state -> [ns per invalidation]
    insns: dict = field(default_factory=dict)     # state -> [guest instructions per invalidation]
    programs: dict = field(default_factory=dict)  # BPF program -> (runs, ns) per invalidation

    def median(self, state):
        return statistics.median(self.ns[state])

    @property
    def ratios(self):
        """The paired full/off ratio of each repetition."""
        return [f / o for f, o in zip(self.ns["full"], self.ns["off"])]

    @property
    def ratio(self):
        return statistics.median(self.ratios)

    def insns_of(self, state):
        """Instructions per invalidation in state: the least of the repetitions. What else
        the vCPU runs during a loop (other tasks, deferred work) only adds to its count."""
        return min(self.insns[state])

    def insn_ratio(self, state="full"):
        """state's instructions per invalidation over those without mnmon."""
        return self.insns_of(state) / self.insns_of("off")

    def insn_agreement(self, state):
        """How far the second-least count lies above the least: (second - least) / least.
        Small, the least is a count runs repeat, not a one-off."""
        v = sorted(self.insns[state])
        return (v[1] - v[0]) / v[0] if len(v) > 1 else float("inf")

    def insn_outliers(self, state, within):
        """Runs more than `within` above the least (a run that caught other work)."""
        least = self.insns_of(state)
        return sum(x > least * (1 + within) for x in self.insns[state])

    @property
    def added_ns(self):
        return self.median("full") - self.median("off")

    @property
    def breakdown(self):
        """Added ns per invalidation by group: core probes, callback probes."""
        m = self.median
        return {"core": m("core") - m("off"), "callbacks": m("full") - m("core")}

    @property
    def probe_hits(self):
        return sum(runs for runs, _ in self.programs.values())

    @property
    def bpf_ns(self):
        return sum(ns for _, ns in self.programs.values())


def wait_attached(mon, symbols, timeout=30):
    """Refresh discovery, as the daemon does, until every symbol's callback probe is attached."""
    deadline = time.monotonic() + timeout
    while True:
        mon.refresh()
        missing = [s for s in symbols if not mon.is_attached(s)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not attached within {timeout} s: {missing}")
        time.sleep(0.2)


def discover(mon, modes):
    """Run each mode once under the monitor so its callbacks get discovered and attached."""
    for mode in modes:
        with churn.Held(mode, 100) as c:
            if not mon.coverage.callbacks:      # none attach (the lean configuration probes none)
                wait_attached(mon, CALLBACKS[churn.notifier(mode)])
            c.go()
            c.wait_result()


def profile(mon, modes, iterations, reps=3):
    """Per mode, each BPF program's runs and ns per invalidation (kernel.bpf_stats_enabled),
    medians of reps runs. Not timed runs: the statistics cost two clock reads per program run."""
    runs = {mode: [] for mode in modes}
    n_of = {mode: churn.iterations_for(mode, iterations) for mode in modes}
    with bpfstats.enabled():
        for _ in range(reps):
            for mode in modes:
                before = bpfstats.read(mon.bpf, _fentry_programs(mon))
                churn.run(mode, n_of[mode])
                runs[mode].append(bpfstats.delta(bpfstats.read(mon.bpf, _fentry_programs(mon)), before))
    out = {}
    for mode, deltas in runs.items():
        names = {name for d in deltas for name in d}
        n = n_of[mode]
        out[mode] = {name: (statistics.median(d.get(name, (0, 0))[0] for d in deltas) / n,
                            statistics.median(d.get(name, (0, 0))[1] for d in deltas) / n)
                     for name in names}
    return out


def _fentry_programs(mon):
    mf = mon.watcher.mf if mon.watcher else None
    return dict(mf.programs) if mf else {}


def measure(mon, modes, reps, iterations, log=lambda *a: None, counter=None):
    """{mode: ModeResult} for a started Monitor whose callbacks for modes are attached.
    counter: a bench.insns.Counter, to count each timed run's guest instructions too."""
    method = mon.statuses["invalidate_range_start"].method
    toggle = Toggle(mon)
    results = {mode: ModeResult(mode, method, {s: [] for s in STATES},
                                {s: [] for s in STATES} if counter else {}) for mode in modes}
    order = list(STATES)
    try:
        for rep in range(reps):
            for state in (order if rep % 2 == 0 else order[::-1]):
                with watchdog.limit(f"{method} rep {rep + 1}: attaching {state}", 120):
                    toggle.set(STATES[state])
                time.sleep(SETTLE_S)
                for mode in modes:
                    with watchdog.limit(f"{method} rep {rep + 1} {state}: churn {mode}", 120):
                        churn.run(mode, churn.iterations_for(mode, WARMUP))
                        if counter:
                            counter.take()      # the warm-up's and any earlier loop's
                        r = churn.run(mode, churn.iterations_for(mode, iterations))
                        results[mode].ns[state].append(r.ns_per_iter)
                        if counter:
                            results[mode].insns[state].append(counter.one() / r.iterations)
            log(f"  {method} rep {rep + 1}/{reps}: " + ", ".join(
                f"{m} {results[m].ns['off'][-1] / 1e3:.1f}->{results[m].ns['full'][-1] / 1e3:.1f} us" +
                (f" ({results[m].insns['off'][-1]:.0f}->{results[m].insns['full'][-1]:.0f} insns)"
                 if counter else "")
                for m in modes))
    finally:
        toggle.set(ALL)
    for mode, programs in profile(mon, modes, max(1000, iterations // 5)).items():
        results[mode].programs = programs
    return results
