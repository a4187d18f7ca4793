"""Where the daemon's memory goes: RSS per kind of mapping and malloc's account after
each phase of Monitor.start() (the same steps, in order) and across scrapes as
bench/footprint.py makes them. Not part of the benchmark table; run as root where the
monitor runs (the bed: python -m bed.vm --kernel K --cpus 1 -- .venv/bin/python -m
bench.memory_phases --scrapes 240).
"""
import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench import footprint, scrape, smaps
from monitor.attach import loader, memory
from monitor.attach.probe import attach_spec
from monitor.attach.session import Monitor, _gather, _mark_mrelease_text
from monitor.kernel.symbols import Symbols
from monitor.plan import attach_plan

T0 = time.monotonic()
GROUPS = ("heap", "anon", "LLVM", "clang", "bcc", "python", "other files", "bpf")


def phase(what):
    """One line: VmRSS / anon / file MB, resident MB per kind of mapping, malloc's account,
    Python's traced allocations when tracemalloc is on."""
    rss, anon, file_ = footprint.rss_mb()
    groups = smaps.by_mapping(Path("/proc/self/smaps").read_text())
    rest = sum(v for k, v in groups.items() if k not in GROUPS)
    parts = " ".join(f"{k} {groups.get(k, 0) / 1024:.1f}" for k in GROUPS) + f" rest {rest / 1024:.1f}"
    mi = smaps.mallinfo()
    malloc = (f" | malloc used {mi['used'] / 2**20:.1f} free {mi['free'] / 2**20:.1f} "
              f"mmapped {mi['mmapped'] / 2**20:.1f}") if mi else ""
    traced = ""
    if tracemalloc.is_tracing():
        now, peak = tracemalloc.get_traced_memory()
        traced = f" | py {now / 2**20:.1f} peak {peak / 2**20:.1f}"
        tracemalloc.reset_peak()      # each line's peak: the transients of its phase alone
    print(f"[{time.monotonic() - T0:5.0f} s] {what:28} RSS {rss:6.1f} (anon {anon:5.1f} file {file_:5.1f}) | "
          f"{parts}{malloc}{traced}", flush=True)


def start():
    """Monitor.start()'s steps, one phase each."""
    phase("before start")
    bcc, _ = loader.import_bcc()
    phase("bcc imported")
    symbols = Symbols.load()
    phase("kallsyms read")
    facts = _gather(bcc, symbols)
    phase("facts + layout (vmlinux BTF)")
    plan = attach_plan.plan(facts)
    bpf = loader.compile_program(plan, facts)
    phase("compiled + loaded")
    _mark_mrelease_text(bpf, symbols)
    with loader.stderr_to(tempfile.TemporaryFile()):
        statuses = {spec.probe: attach_spec(bpf, spec) for spec in plan.probes}
        phase("core probes attached")
        mon = Monitor(bpf, facts, plan, symbols, statuses, started_at=time.time())
        if statuses.get("notifier_release") and statuses["notifier_release"].attached:
            t = bpf[b"release_walked"]
            t[t.Key(0)] = t.Leaf(1)
        mon.refresh()
    phase("callbacks attached")
    memory.release_compiler_memory(bpf)
    phase("compiler memory released")
    return mon


def discover(mon):
    """What make bench does before its hour: each churn mode once, its callbacks attached."""
    from bench import churn, overhead
    churn.build()
    modes = [m for m in churn.MODES if churn.notifier(m) != "kvm" or Path("/dev/kvm").exists()]
    overhead.discover(mon, modes)
    phase(f"discovered ({', '.join(modes)})")


def top_growth(before, n=8):
    """The n allocation sites tracemalloc saw grow most since before (a snapshot, or None:
    not tracing); the snapshot now, for the next phase."""
    if before is None:
        return None
    after = tracemalloc.take_snapshot()
    for stat in after.compare_to(before, "lineno")[:n]:
        print(f"    {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks  {stat.traceback}")
    return after


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.memory_phases", description=__doc__)
    ap.add_argument("--scrapes", type=int, default=240, help="scrapes, 3 refresh() each (240: an hour)")
    ap.add_argument("--every", type=int, default=40, help="a line every this many scrapes")
    ap.add_argument("--discover", action="store_true",
                    help="before the scrapes, run each churn mode once as make bench does (callbacks "
                         "attach, maps fill)")
    ap.add_argument("--idle", type=int, default=0,
                    help="then this many idle windows of 15 s (the daemon's duty cycle), as make bench runs")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace Python's allocations from the end of the start: growth and peak per phase")
    args = ap.parse_args(argv)

    mon = start()
    scraper = scrape.Scraper(scrape.registry_for(mon))
    try:
        before = None
        if args.tracemalloc:
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
        if args.discover:
            discover(mon)
            before = top_growth(before)
        if args.idle:
            footprint.idle_windows(mon, scraper.scrape, args.idle)
            phase(f"{args.idle} idle windows")
            before = top_growth(before)
        footprint.scrapes(mon, scraper.scrape, 3)
        phase("3 scrapes")
        done = 0
        while done < args.scrapes:
            n = min(args.every, args.scrapes - done)
            footprint.scrapes(mon, scraper.scrape, n)
            done += n
            phase(f"+{done} scrapes")
        top_growth(before)
        memory.malloc_trim()
        phase("after malloc_trim(0)")
    finally:
        scraper.close()
        mon.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
