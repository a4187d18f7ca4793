"""mnmon's benchmarks: overhead on the invalidation path, exactness under load, the
daemon's footprint, scrape cost. Not part of the test suite.

    make bench                      boots the stock kernel under QEMU and runs this there
    python -m bench --only scrape   the scrape-cost figure alone, anywhere (no BPF)

Prints a table (target, measured, peer reference, PASS/MISS/info) and details, and
writes both with how they were measured to --results (build/bench/RESULTS.md).
"""
import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

from bench import churn, cpus, footprint, hotspots, insns, report, results_json, scrape, watchdog
from bench.report import PEER, Row, us, verdict
from monitor.plan import catalogue
from monitor.attach import latency_windows, memory

RESULTS = churn.REPO / "build" / "bench" / "RESULTS.md"
# The core probes and the reaper's, each by kprobe: what fentry saves, measured on one kernel.
FORCE_KPROBE = {name: catalogue.KPROBE for name in catalogue.core_names() + ["oom_reap_task_mm"]}
HASH_VARIANT = "in-flight hash (< 5.12)"
RSS_TARGET_MB, IDLE_TARGET_PCT, SCRAPE_TARGET_MS = 120, 0.5, 20
# Instruction ratios (the default configuration / no mnmon) of KVM invalidations, one page
# and 64; and how far repeated counts of the same run may differ for a ratio to mean something.
INSN_TARGET_ONE_PAGE, INSN_TARGET_MULTI_PAGE, INSN_REPEAT = 1.10, 1.01, 0.01
# ... and of the lean configuration, one-page KVM invalidations.
INSN_TARGET_LEAN = 1.03
LEAN_VARIANT = "lean"
# ... and of the counts configuration (probes.latency: off): every count, no latency.
INSN_TARGET_COUNTS = 1.10
COUNTS_VARIANT = "counts"
# ... and with latency continuous (probes.latency: always): the default's path in a window,
# held open, and the core start timed too (an entry beside the counts fexit); a build of its own.
INSN_TARGET_ALWAYS = 1.20
ALWAYS_VARIANT = "latency always"
# Every probe (probes.latency: full): the core start timed too, outcomes from each callback.
FULL_VARIANT = "every probe"
# The builds measured besides the default one (--variants); counts is the default's path
# between windows, measured there too, so not asked by default; kprobe and hash (what fentry
# and task storage save, README: run D) neither, for make bench to keep within 15 minutes
# on a slow hour of a shared machine.
VARIANTS = ("kprobe", "hash", "lean", "counts", "full", "always")
DEFAULT_VARIANTS = ("lean", "always", "full")


T0 = time.monotonic()


def log(msg):
    print(f"bench [{time.monotonic() - T0:4.0f} s]: {msg}", flush=True)


def emulated():
    return os.environ.get("MNMON_GUEST") == "1"


def environment():
    where = "QEMU TCG software emulation" if emulated() else "this host"
    return f"kernel {os.uname().release}, {len(cpus.online())} of {len(cpus.present())} CPUs online, {where}"


# ------------------------------------------------------------------ scrape cost
def scrape_rows(details):
    cost = scrape.synthetic_cost(100)
    st = scrape.stages(100)
    details.append("scrape, synthetic 100 notifiers, median ms per stage: " +
                   ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    if cost.median_ms >= SCRAPE_TARGET_MS:
        with scrape.Scraper(scrape.registry_for(scrape.SyntheticMonitor(100))) as s:
            details.append(hotspots.describe("hot spots, synthetic scrape", hotspots.profile(s.scrape)))
    # The target is for real CPUs: under emulation the figure is shown, not judged.
    where = " (emulated CPU: judged by `python -m bench --only scrape` on real hardware)" if emulated() else ""
    return [Row(f"/metrics, 100 notifiers x all label sets: median < {SCRAPE_TARGET_MS} ms",
                f"{cost.median_ms:.1f} ms (p90 {cost.p90_ms:.1f}; {cost.series} samples, "
                f"{cost.body_bytes // 1024} KiB){where}", "",
                "info" if emulated() else verdict(cost.median_ms < SCRAPE_TARGET_MS))]


# ------------------------------------------------------------------ the kernel parts
def overhead_rows(results, details, variant=""):
    from bench.overhead import label
    rows = []
    for r in results.values():
        b = r.breakdown
        fentry_hits = sum(n for p, (n, _) in r.programs.items() if p.startswith(("kfunc__", "kretfunc__", "cbf_")))
        other_hits = r.probe_hits - fentry_hits
        peer_ns = round(fentry_hits * 24 + other_hits * 137)
        # Emulated time is shown beside the instruction counts, not judged: it follows the
        # host's load (a shared machine: 0.2-0.5 between repetitions).
        rows.append(Row(f"{label(r.mode)}, core by {r.method}{variant}: emulated time ratio",
                        f"{r.ratio:.3f} [{min(r.ratios):.2f}..{max(r.ratios):.2f}] "
                        f"({us(r.median('off'))} -> {us(r.median('full'))} per invalidation)",
                        PEER.get(r.method, PEER["fentry"])))
        rows.append(Row("  added per invalidation",
                        f"+{r.added_ns:.0f} ns: core {b['core']:+.0f}, callbacks {b['callbacks']:+.0f}; "
                        f"{r.probe_hits:.0f} probe hits, BPF code {r.bpf_ns:.0f} ns",
                        f"{fentry_hits:.0f} fentry + {other_hits:.0f} kprobe hits ~ {peer_ns} ns"))
        details.append(f"overhead {r.mode}/{r.method}{variant}: medians ns/invalidation " +
                       ", ".join(f"{s} {r.median(s):.0f} [{min(v):.0f}..{max(v):.0f}]" for s, v in r.ns.items()) +
                       f"; n={len(r.ns['off'])}")
        details.append(f"  BPF programs per invalidation (runs, ns): " +
                       ", ".join(f"{p} {n:.2f}x {ns:.0f}" for p, (n, ns) in
                                 sorted(r.programs.items(), key=lambda kv: -kv[1][1])))
    return rows


def insn_rows(builds, details, share=None):
    """Instruction ratios, every probe and core only against no mnmon, per build and mode;
    then whether the counts repeat. builds: [(results, variant)]; share: the first build
    times callbacks that fraction of the time (probes.latency: sampled, see default_row())."""
    from bench.overhead import label
    rows, agreement, outliers, runs = [], [], 0, 0
    for b, (results, variant) in enumerate(builds):
        for r in results.values():
            if not r.insns:
                continue
            one_page = churn.pages(r.mode) == 1
            if b == 0 and share is not None:
                rows.append(default_row(r, share))
            target = INSN_TARGET_ONE_PAGE if one_page else INSN_TARGET_MULTI_PAGE
            if variant == f", {LEAN_VARIANT}" and one_page:
                target = INSN_TARGET_LEAN
            if variant == f", {COUNTS_VARIANT}" and one_page:
                target = INSN_TARGET_COUNTS
            if variant == f", {ALWAYS_VARIANT}" and one_page:
                target = INSN_TARGET_ALWAYS
            if b > 0 and variant in ("", f", {HASH_VARIANT}", f", {FULL_VARIANT}"):
                target = None       # every probe's builds (kprobe, hash, full): no target of their own
            states = "every probe / core only"
            if b == 0 and share is not None:
                states = "in a window / between windows"
                target = None       # judged as the default's weighted ratio (default_row())
            judged = churn.notifier(r.mode) == "kvm" and target is not None
            full, core, off = (r.insns_of(s) for s in ("full", "core", "off"))
            rows.append(Row(f"{label(r.mode)}, core by {r.method}{variant}: instruction ratio, "
                            f"{states}" + (f" ({states.split(' / ')[0]} <= {target})" if judged else ""),
                            f"{r.insn_ratio('full'):.3f} / {r.insn_ratio('core'):.3f} "
                            f"({off:,.0f} -> {core:,.0f} -> {full:,.0f} instructions per invalidation)",
                            "", verdict(r.insn_ratio("full") <= target) if judged else "info"))
            agreement += [(r.insn_agreement(s), f"{r.mode}/{r.method}{variant}/{s}") for s in r.insns]
            outliers += sum(r.insn_outliers(s, INSN_REPEAT) for s in r.insns)
            runs += sum(len(v) for v in r.insns.values())
            details.append(f"instructions {r.mode}/{r.method}{variant}: per invalidation, each state's "
                           "runs in order: " + "; ".join(f"{s} " + " ".join(f"{x:.0f}" for x in v)
                                                         for s, v in r.insns.items()))
    if agreement:
        worst = max(agreement)
        rows.append(Row(f"instruction counts repeat: each series' least two runs within {INSN_REPEAT:.0%}",
                        f"{sum(x <= INSN_REPEAT for x, _ in agreement)} of {len(agreement)} series; widest "
                        f"{worst[0]:.2%} ({worst[1]}); {outliers} of {runs} single runs more than "
                        f"{INSN_REPEAT:.0%} above their series' least (other work during the loop)",
                        "", verdict(worst[0] <= INSN_REPEAT)))
    return rows


def default_row(r, share):
    """The default configuration's ratio: probes.latency: sampled runs the path between
    windows ('core': every probe but the callbacks') and in a window ('full') share of the
    time; over time the instructions are their weighted mean."""
    from bench.overhead import label
    one_page = churn.pages(r.mode) == 1
    target = INSN_TARGET_ONE_PAGE if one_page else INSN_TARGET_MULTI_PAGE
    ratio = results_json.sampled_ratio(r, share)
    judged = churn.notifier(r.mode) == "kvm"
    return Row(f"{label(r.mode)}, default configuration (latency sampled, callbacks timed {share:.1%} of the "
               f"time): instruction ratio" + (f" <= {target}" if judged else ""),
               f"{ratio:.3f} (between windows {r.insn_ratio('core'):.3f}, in a window {r.insn_ratio('full'):.3f}; "
               f"{r.insns_of('off'):,.0f} -> {r.insns_of('core'):,.0f} / {r.insns_of('full'):,.0f} instructions "
               f"per invalidation)", "", verdict(ratio <= target) if judged else "info")


def insn_figures(builds):
    """{'mode/method[variant]/state': instructions per invalidation}: what
    `python -m bench.compare` holds two runs side by side on."""
    return {f"{r.mode}/{r.method}{variant}/{s}": round(r.insns_of(s), 1)
            for results, variant in builds for r in results.values() for s in r.insns}


def overhead_of_another_build(args, modes, what, counter=None, **start):
    """The overhead runs with the monitor compiled and attached as Monitor.start(**start) does."""
    from bench import overhead
    from monitor.attach.session import Monitor, MonitorError

    log(f"Monitor.start({what})...")
    with watchdog.limit(f"Monitor.start({what})", 300):
        mon = Monitor.start(**start)
    st = mon.statuses["invalidate_range_start"]
    if not st.attached:     # its figures would be another configuration's
        mon.close()
        raise MonitorError(f"{what}: the core start did not attach: {st.reason}")
    try:
        with watchdog.limit("discovery", 120):
            overhead.discover(mon, modes)
        log(f"overhead, core by {mon.statuses['invalidate_range_start'].method}, {what}")
        return overhead.measure(mon, modes, args.reps, args.iterations, log, counter)
    finally:
        mon.close()


def variants(text):
    """--variants' value: the builds besides the default one, in VARIANTS."""
    asked = [v for v in text.split(",") if v]
    if bad := [v for v in asked if v not in VARIANTS]:
        raise argparse.ArgumentTypeError(f"unknown variant {', '.join(bad)}; known: {', '.join(VARIANTS)}")
    return asked


def kernel_rows(args, details, figures, summary):
    """The kernel benchmarks' rows; figures gets insn_figures(), summary what RESULTS.json
    says of the configurations, the footprint and exactness (bench/results_json.py)."""
    from bench import exactness, overhead
    from monitor.plan.attach_plan import HASH
    from monitor.attach.session import Monitor, MonitorError

    rows = []
    churn.build()
    counter = insns.Counter(args.insns) if args.insns else None
    if not counter:
        details.append("no instruction counts: run under QEMU with the insncount plugin (make bench)")
    modes = [m for m in churn.MODES if churn.notifier(m) != "kvm" or Path("/dev/kvm").exists()]
    if "kvm" not in modes:
        details.append("no /dev/kvm: the KVM rows are skipped")
    rss_before = footprint.rss_mb()
    log("Monitor.start(latency=sampled), the default configuration (bcc compiles)...")
    t0 = time.monotonic()
    try:
        with watchdog.limit("Monitor.start()", 300):
            mon = Monitor.start(latency="sampled")
    except MonitorError as e:
        raise SystemExit(f"bench: mnmon cannot start: {e}")
    start_s = time.monotonic() - t0
    rss_start = footprint.rss_mb()
    log(f"ready in {start_s:.1f} s, VmRSS {rss_start[0]:.0f} MB")
    scraper = scrape.Scraper(scrape.registry_for(mon))
    scrape_once = scraper.scrape
    try:
        # The daemon's life first (discovery, scrapes, refreshes), so its footprint is not
        # the benchmark's: the overhead runs detach and re-attach probes many times.
        with watchdog.limit("discovery", 120):
            overhead.discover(mon, modes)
        log(f"idle: {args.idle_windows} windows of {footprint.SCRAPE_S:.0f} s of the daemon's duty cycle...")
        with watchdog.limit("idle", 60 + 30 * args.idle_windows):
            windows = footprint.idle_windows(mon, scrape_once, args.idle_windows)
        idle = windows[len(windows) // 2]
        if idle.core_pct >= IDLE_TARGET_PCT:
            details.append(hotspots.describe("hot spots, live scrape", hotspots.profile(scrape_once)))
            details.append(hotspots.describe("hot spots, refresh()", hotspots.profile(mon.refresh, 10)))
        log(f"an hour of scrapes: {args.scrapes} renderings, 3 refresh() each...")
        with watchdog.limit("an hour of scrapes", 600):
            times, body = footprint.scrapes(mon, scrape_once, args.scrapes)
        rss_hour = footprint.rss_mb()
        trimmed = memory.malloc_trim()
        rss_trim = footprint.rss_mb()
        log(f"exactness: {args.million:,} invalidations through the interval notifier...")
        with watchdog.limit("exactness", 60 + args.million // 10000):
            ex = exactness.run(mon, scrape_once, args.million)
        # Sampled latency: its window held open, so the callbacks' probes are there to toggle:
        # 'core' is then the path between windows, 'full' the path in one.
        share = latency_windows.MAX_SHARE if mon.windows else None      # over a long run, at any interval
        if mon.windows:
            mon.windows.hold()
        log(f"overhead, core by {mon.statuses['invalidate_range_start'].method}: "
            f"{args.reps} x {len(overhead.STATES)} states x {modes}, {args.iterations} iterations each")
        results = overhead.measure(mon, modes, args.reps, args.iterations, log, counter)
    finally:
        scraper.close()
        mon.close()
    results_k = results_h = results_l = results_c = results_a = results_w = {}
    if "kprobe" in args.variants:
        results_k = overhead_of_another_build(args, modes, "force=kprobe", counter, force=FORCE_KPROBE)
    if "hash" in args.variants:
        # The hot-spot fix, measured: in-flight records where kernels before 5.12 keep them.
        results_h = overhead_of_another_build(args, modes, "inflight=hash", counter, inflight=HASH)

    default = results_json.configuration(results, share)
    configurations = {results_json.DEFAULT: default,
                      # where sampled latency cannot run, the default is every probe
                      results_json.EVERY_PROBE: results_json.same_as(default, results_json.DEFAULT) if share is None
                      else results_json.not_run("not asked (--variants)"),
                      results_json.LEAN: results_json.not_run("not asked (--variants)"),
                      results_json.COUNTS: results_json.not_run("not asked (--variants)")}
    # where sampled latency cannot run, latency always is every probe too, as the default is
    configurations[results_json.ALWAYS] = results_json.same_as(default, results_json.DEFAULT) if share is None \
        else results_json.not_run("not asked (--variants)")
    if "always" in args.variants and share is not None:
        # Latency always: the default's window held open, and the core start timed too.
        results_w = overhead_of_another_build(args, modes, "latency=always", counter, latency="always")
        configurations[results_json.ALWAYS] = results_json.configuration(results_w)
    if "full" in args.variants and share is not None:
        # Every probe (probes.latency: full).
        results_a = overhead_of_another_build(args, modes, "latency=full", counter, latency="full")
        configurations[results_json.EVERY_PROBE] = results_json.configuration(results_a)
    if "lean" in args.variants:
        # The lean configuration (attach_plan.plan(lean=True)): one fexit per invalidation.
        try:
            results_l = overhead_of_another_build(args, modes, "lean", counter, lean=True)
            configurations[results_json.LEAN] = results_json.configuration(results_l)
        except MonitorError as e:       # a kernel without it: the other builds' figures stand
            details.append(f"lean configuration not measured: {e}")
            configurations[results_json.LEAN] = results_json.not_run(str(e))
    if "counts" in args.variants:
        # The counts configuration (probes.latency: off): an fexit on the start, an fentry on the end.
        try:
            results_c = overhead_of_another_build(args, modes, "latency=off", counter, latency="off")
            configurations[results_json.COUNTS] = results_json.configuration(results_c)
        except MonitorError as e:
            details.append(f"counts configuration not measured: {e}")
            configurations[results_json.COUNTS] = results_json.not_run(str(e))
    summary["configurations"] = configurations

    builds = [(results, ""), (results_w, f", {ALWAYS_VARIANT}"), (results_a, f", {FULL_VARIANT}"), (results_k, ""),
              (results_h, f", {HASH_VARIANT}"),
              (results_l, f", {LEAN_VARIANT}"), (results_c, f", {COUNTS_VARIANT}")]
    rows += insn_rows(builds, details, share)
    figures.update(insn_figures(builds))
    for results_b, variant in builds:
        rows += overhead_rows(results_b, details, variant)
    rows.append(Row(f"{ex.iterations:,} interval invalidations: mnmon == fixture, 0 lost",
                    f"mnmon {ex.mnmon:,}, fixture {ex.fixture:,}, core starts {ex.core:,}, lost {ex.lost}; "
                    f"{us(ex.ns_per_iter)} per invalidation", "", verdict(ex.exact)))
    rows.append(Row("Monitor.start() to ready", f"{start_s:.1f} s (bcc compiles the BPF C)"))
    rows.append(Row(f"RSS after start <= {RSS_TARGET_MB} MB",
                    f"{rss_start[0]:.0f} MB (anon {rss_start[1]:.0f}, file {rss_start[2]:.0f}; "
                    f"{rss_before[0]:.0f} MB before start)", "", verdict(rss_start[0] <= RSS_TARGET_MB)))
    rows.append(Row(f"RSS after {args.scrapes} scrapes (an hour) <= {RSS_TARGET_MB} MB",
                    f"{rss_hour[0]:.0f} MB (anon {rss_hour[1]:.0f}, file {rss_hour[2]:.0f}); "
                    f"{rss_trim[0]:.0f} MB after malloc_trim(0)" + ("" if trimmed else " (nothing to trim)"),
                    "", verdict(rss_hour[0] <= RSS_TARGET_MB)))
    no_scrapes = 100 * (idle.cpu_s - idle.scrape_cpu_s) / idle.wall_s
    rows.append(Row(f"CPU idle < {IDLE_TARGET_PCT} % of a core",
                    f"{idle.core_pct:.2f} % (median of {len(windows)} windows of {idle.wall_s:.0f} s, "
                    f"{windows[0].core_pct:.2f}..{windows[-1].core_pct:.2f}; each {idle.refreshes} refresh() "
                    f"and {idle.scrapes} scrape; {no_scrapes:.2f} % without the scrape)", "",
                    verdict(idle.core_pct < IDLE_TARGET_PCT)))
    rows.append(Row("CPU under the invalidation loop (daemon process)",
                    f"{ex.duty.core_pct:.2f} % of a core over {ex.duty.wall_s:.0f} s; BPF time is the loop's "
                    f"(overhead rows)"))
    rows.append(Row("scrape of the live maps (snapshot + exposition)",
                    f"median {statistics.median(times):.1f} ms, {len(body.splitlines())} lines"))
    summary["footprint"] = results_json.footprint(start_s, rss_before, rss_start, rss_hour, rss_trim, args.scrapes,
                                                  idle.core_pct, statistics.median(times))
    summary["exactness"] = {"iterations": ex.iterations, "mnmon": ex.mnmon, "fixture": ex.fixture,
                            "lost": ex.lost, "exact": ex.exact}
    per = lambda cpu, n: f"{1e3 * cpu / n:.1f} ms" if n else "-"
    details.append(f"idle CPU: refresh() {per(idle.refresh_cpu_s, idle.refreshes)} CPU each, "
                   f"scrape {per(idle.scrape_cpu_s, idle.scrapes)} CPU each; "
                   f"under load: refresh() {per(ex.duty.refresh_cpu_s, ex.duty.refreshes)}, "
                   f"scrape {per(ex.duty.scrape_cpu_s, ex.duty.scrapes)}")
    details.append(f"RSS (MB, VmRSS/anon/file): before start {rss_before[0]:.0f}/{rss_before[1]:.0f}/"
                   f"{rss_before[2]:.0f}, after start {rss_start[0]:.0f}/{rss_start[1]:.0f}/{rss_start[2]:.0f}, "
                   f"after an hour {rss_hour[0]:.0f}/{rss_hour[1]:.0f}/{rss_hour[2]:.0f}, "
                   f"after malloc_trim {rss_trim[0]:.0f}/{rss_trim[1]:.0f}/{rss_trim[2]:.0f}")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["scrape"], help="run only this benchmark (no BPF, no root)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each overhead state (default 5)")
    ap.add_argument("--iterations", type=int, default=3000, help="invalidations per overhead run")
    ap.add_argument("--insns", default="", help="the insncount QEMU plugin's output file: count guest "
                    "instructions per invalidation (make bench passes it)")
    ap.add_argument("--million", type=int, default=1_000_000, help="invalidations of the exactness run")
    ap.add_argument("--idle-windows", type=int, default=3,
                    help="idle CPU windows of 15 s (a scrape, 3 refreshes); the median counts")
    ap.add_argument("--scrapes", type=int, default=240, help="scrapes of the hour-equivalent (15 s apart)")
    ap.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' for none); "
                    "its figures go beside it, as RESULTS.json")
    ap.add_argument("--variants", type=variants, default=list(DEFAULT_VARIANTS),
                    help=f"the builds measured besides the default one, comma-separated, of {','.join(VARIANTS)} "
                         f"(default {','.join(DEFAULT_VARIANTS)}); each costs a compile and its overhead runs")
    ap.add_argument("--all-cpus", action="store_true",
                    help="keep every CPU of the emulated guest online (see bench/cpus.py)")
    args = ap.parse_args(argv)

    details, figures, summary = [], {}, {}
    one_cpu = emulated() and not args.all_cpus and not args.only
    with cpus.only_cpu0() if one_cpu else contextlib.nullcontext():
        env = environment()
        log(env)
        if emulated():
            log(report.EMULATION)
        if one_cpu:
            details.append("one CPU online in the guest: attaching on two emulated vCPUs froze the guest "
                           "now and then (bench/cpus.py)")
        rows = [] if args.only else kernel_rows(args, details, figures, summary)
        rows += scrape_rows(details)

    print()
    print(f"mnmon benchmarks: {env}, {time.monotonic() - T0:.0f} s")
    if emulated():
        print(report.EMULATION)
    print()
    print(report.table(rows))
    print()
    print("\n".join(details))
    if args.results:
        path = Path(args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        note = f"\n\n{report.EMULATION}" if emulated() else ""
        path.write_text(f"# mnmon benchmark results\n\n{env}, {time.strftime('%Y-%m-%d')}.{note}\n\n"
                        f"{report.markdown(rows)}\n\nDetails:\n\n" +
                        "".join(f"    {d}\n" for d in details) + "\n" + report.METHOD)
        log(f"written to {path}")
        if figures or summary:
            path.with_suffix(".json").write_text(
                results_json.document(os.uname().release, time.strftime("%Y-%m-%d"), figures, summary))
            log(f"figures written to {path.with_suffix('.json')} (python -m bench.compare A B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
