"""Where an invalidation's instructions go, per kernel function, BPF program and
trampoline: without mnmon, with the core probes, with every probe, in one boot.

    make bench-profile [PROFILE_ARGS="--modes kvm,list --lean"]   (or --counts)

The QEMU plugin (bench/plugin/insncount.c, profile=) writes, per churn loop, how many
instructions each translated block executed; this names the blocks from the guest's
/proc/kallsyms (read right after the loop, while that state's programs and trampolines
exist) and prints instructions per invalidation per symbol, most added first. A block is
named by its first address: a block that falls through into the next function counts
for the first.
"""
import argparse
import bisect
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench import churn, cpus, insns, watchdog
from bench.overhead import SETTLE_S, STATES, WARMUP, discover
from bench.toggle import Toggle

USER = "(user space)"
KERNEL_START = 0xffff800000000000


class Kallsyms:
    """Addresses -> names, from /proc/kallsyms as it is now."""

    def __init__(self, text):
        entries = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            addr = int(parts[0], 16)
            if addr:
                entries.append((addr, parts[2]))
        entries.sort()
        self.addrs = [a for a, _ in entries]
        self.names = [n for _, n in entries]

    def name(self, pc):
        if pc < KERNEL_START:
            return USER
        i = bisect.bisect_right(self.addrs, pc) - 1
        return self.names[i] if i >= 0 else "(unknown)"


def short(name):
    """bpf_prog_<tag>_<name> -> bpf:<name>: a program's tag changes with every build."""
    if name.startswith("bpf_prog_"):
        rest = name[len("bpf_prog_"):]
        tag, _, prog = rest.partition("_")
        return f"bpf:{prog or tag}"
    return name


class Profile(insns.PluginFile):
    """The plugin's profile file, read from where the last take() stopped."""

    def __init__(self, path):
        super().__init__(path, "run under QEMU with the plugin's profile= (make bench-profile)")

    def take(self):
        """[{pc: instructions}] of the loops since the last take()."""
        loops, cur = [], {}
        for line in self.read_new(b"end\n").splitlines():
            if line == "end":
                loops.append(cur)
                cur = {}
                continue
            pc, n = line.split()
            cur[int(pc, 16)] = int(n)
        return loops

    def one(self):
        loops = self.take()
        if len(loops) != 1:
            raise insns.InsnsError(f"expected the profile of one loop, found {len(loops)}")
        return loops[0]


def by_symbol(blocks, syms, iterations):
    out = defaultdict(float)
    for pc, n in blocks.items():
        out[short(syms.name(pc))] += n / iterations
    return dict(out)


def run(mode, iterations, counter, prof):
    """({symbol: instructions per invalidation}, instructions per invalidation) of one loop."""
    churn.run(mode, churn.iterations_for(mode, WARMUP))
    counter.take()
    prof.take()
    r = churn.run(mode, churn.iterations_for(mode, iterations))
    total = counter.one() / r.iterations
    syms = Kallsyms(Path("/proc/kallsyms").read_text())
    return by_symbol(prof.one(), syms, r.iterations), total


def states(mon, mode, iterations, counter, prof):
    """({state: {symbol: instructions per invalidation}}, {state: instructions per
    invalidation}) of mode's loop in each of bench.overhead's states, for a started
    Monitor whose callbacks for mode are attached. Leaves every probe attached."""
    toggle = Toggle(mon)
    per_state, totals = {}, {}
    try:
        for state, groups in STATES.items():
            with watchdog.limit(f"profile {mode}: attaching {state}", 120):
                toggle.set(groups)
            time.sleep(SETTLE_S)
            with watchdog.limit(f"profile {mode} {state}", 120):
                per_state[state], totals[state] = run(mode, iterations, counter, prof)
    finally:
        toggle.set(STATES["full"])
    return per_state, totals


# What the kernel runs around and for a BPF program, by what it is for: the
# categories the added instructions are summed into (by symbol name prefix).
CATEGORIES = (
    ("BPF programs' own code", ("bpf:",)),
    ("trampolines and program entry/exit (per program run)",
     ("bpf_trampoline_", "__bpf_tramp_", "__bpf_prog_enter", "__bpf_prog_exit", "migrate_enable",
      "migrate_disable", "__rcu_read_lock", "__rcu_read_unlock", "update_prog_stats")),
    ("kprobes (int3/ftrace, kretprobe return)",
     ("kprobe", "kretprobe", "aggr_pre_handler", "ftrace_", "rethook", "arch_rethook", "trace_call_bpf",
      "pre_handler_kretprobe", "opt_pre_handler", "optimized_callback")),
    ("task-local storage (the start's record)", ("bpf_task_storage", "bpf_local_storage", "bpf_get_current_task")),
    ("hash maps (per-notifier counts)", ("jhash", "htab_", "lookup_nulls_elem", "lookup_elem_raw", "memcmp",
                                         "__htab", "pcpu_")),
    ("array maps (core counts)", ("percpu_array_map", "array_map")),
    ("clock reads", ("ktime_get", "read_tsc", "bpf_ktime")),
    ("helper reads of kernel memory", ("copy_from_kernel_nofault", "bpf_probe_read")),
)


def category(name):
    for cat, prefixes in CATEGORIES:
        if name.startswith(prefixes):
            return cat
    return "the rest (the kernel's own work varies a little: page faults, timers)"


def categories(per_state, totals):
    """[(category, instructions added per invalidation, last state against the first)],
    largest first, and the total added."""
    order = list(per_state)
    first, last = per_state[order[0]], per_state[order[-1]]
    out = defaultdict(float)
    for name in set(first) | set(last):
        out[category(name)] += last.get(name, 0) - first.get(name, 0)
    return sorted(out.items(), key=lambda kv: -kv[1]), totals[order[-1]] - totals[order[0]]


def describe(per_state, totals):
    cats, added = categories(per_state, totals)
    return "\n".join([f"{'added per invalidation, by what it is for':<70} {added:+9.0f}"] +
                      [f"  {cat:<68} {n:+9.0f}" for cat, n in cats])


def table(per_state, totals, top):
    order = list(per_state)
    names = set().union(*(d.keys() for d in per_state.values()))
    added = lambda n: per_state[order[-1]].get(n, 0) - per_state[order[0]].get(n, 0)
    rows = sorted(names, key=lambda n: -abs(added(n)))[:top]
    header = "instructions per invalidation"
    w = max([len(header)] + [len(n) for n in rows])
    lines = [f"{header:<{w}} " + " ".join(f"{s:>9}" for s in order) + "     added"]
    lines.append(f"{'(total)':<{w}} " + " ".join(f"{totals[s]:9.0f}" for s in order) +
                 f" {totals[order[-1]] - totals[order[0]]:+9.0f}")
    for n in rows:
        lines.append(f"{n:<{w}} " + " ".join(f"{per_state[s].get(n, 0):9.1f}" for s in order) + f" {added(n):+9.1f}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--insns", required=True, help="the plugin's out= file")
    ap.add_argument("--profile", required=True, help="the plugin's profile= file")
    ap.add_argument("--modes", default="kvm", help="churn modes, comma-separated: kvm, list, interval, kvm:64 "
                    "(default kvm)")
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--lean", action="store_true", help="the lean configuration")
    ap.add_argument("--counts", action="store_true", help="the counts configuration (probes.latency: off)")
    ap.add_argument("--sampled", action="store_true",
                    help="the default configuration (probes.latency: sampled), its window held open: "
                         "'core' is the path between windows, 'full' the path in one")
    ap.add_argument("--kprobe-callbacks", action="store_true", help="probes.callbacks: kprobe")
    args = ap.parse_args(argv)

    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in churn.MODES]
    if unknown:
        raise SystemExit(f"bench.profile: unknown mode {unknown[0]!r}: one of {', '.join(churn.MODES)}")
    from monitor.attach.session import Monitor

    churn.build()
    counter, prof = insns.Counter(args.insns), Profile(args.profile)
    with cpus.only_cpu0():
        start = {}
        if args.lean:
            start["lean"] = True
        if args.counts:
            start["latency"] = "off"
        if args.sampled:
            start["latency"] = "sampled"
        if args.kprobe_callbacks:
            start["callbacks"] = "kprobe"
        with watchdog.limit("Monitor.start", 300):
            mon = Monitor.start(**start)
        if mon.windows:
            mon.windows.hold()      # the callbacks' timing probes there, for the 'full' state
        try:
            discover(mon, modes)
            for mode in modes:
                per_state, totals = states(mon, mode, args.iterations, counter, prof)
                print(f"{mode}, core by {mon.statuses['invalidate_range_start'].method}"
                      f"{', lean' if args.lean else ''}{', counts' if args.counts else ''}"
                      f"{', sampled (full: in a window)' if args.sampled else ''}: "
                      f"{args.iterations} invalidations per state")
                print(describe(per_state, totals))
                print()
                print(table(per_state, totals, args.top))
                print(flush=True)
        finally:
            mon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
