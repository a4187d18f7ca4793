"""The benchmark's table: target, measured figure, peer reference, PASS / MISS / info."""
from dataclasses import dataclass

# Published per-probe figures of cloudflare/ebpf_exporter's benchmark (bare metal):
# a probe on getpid (117 ns a call), added cost per call.
PEER = {
    "fentry": "fentry +24 ns/probe",
    "kprobe": "kprobe +137 ns/probe",
    "map": "map update ~+100 ns (getpid 117 ns)",
}

EMULATION = ("The bed runs Debian's stock kernel under QEMU software emulation (TCG, no KVM): "
             "absolute ns are inflated many times over real hardware; ratios are what carry over (loosely).")

METHOD = """\
## How it was measured

`make bench` boots Debian's stock kernel under QEMU software emulation (TCG,
`bed/vm.py`: one vCPU, 2 GiB, the host's filesystem as root) with the fixture
module and kvm_amd loaded, and runs `python -m bench` in it, as root. One run:

0. **Guest instructions per invalidation.** QEMU runs with a TCG plugin,
   `bench/plugin/insncount.c` (built by `make bench` against `qemu-plugin.h` from the
   source package of the installed QEMU version, fetched from Debian's archive by
   `bench/plugin/fetch-header.sh`). The plugin adds each translated block's instruction
   count to a counter as the block runs, and recognises two marker instructions
   (`nopl 0x4d4e0001(%rax)`, `nopl 0x4d4e0002(%rax)`: NOPs no compiler emits) that
   `bench/churn.c` executes around its loop; at the second it appends the instructions
   executed in between to a file the guest reads (`bench/insns.py`). That counts the
   loop's user code, the page faults, the invalidations, mnmon's probes and BPF
   programs, and whatever else the one vCPU ran meanwhile (timer interrupts, kernel
   threads). The count does not depend on the host's speed or load, so every timed run
   of step 1 is counted too: instructions per invalidation = count / iterations, the
   least of the repetitions (what else the vCPU ran during a loop only ever adds to its
   count: such runs show up as outliers above the least, and are counted in the table),
   and the instruction ratio of a state = its instructions over those without mnmon.
   Repeatability: each series' least two runs must agree within 1 %; two whole runs are
   compared with `python -m bench.compare` on the `RESULTS.json` each writes.
1. **Overhead on the invalidation path.** `bench/churn.c` (built with the machine's gcc
   into `build/bench/churn`) maps one private anonymous page and subscribes it to one
   notifier: KVM guest memory (a VM whose only memslot is the page: KVM's in-tree list
   notifier), or the fixture's list or interval notifier that never fails. Each iteration
   touches the page and drops it with `madvise(MADV_DONTNEED)`: one page fault plus one
   blockable `invalidate_range_start`/`_end`. One more mode maps 64 pages into the
   VM and drops them with one `madvise`: a 256 KiB invalidation, run a quarter as
   many times (mnmon's cost is per invalidation, not per page; the target is judged
   on one-page invalidations, the worst case). It times the loop with
   `clock_gettime` and prints ns per iteration. The monitor is compiled once per attach method
   (default: fentry/fexit on the core entry points; then `Monitor.start(force=...)` pins
   them to kprobes), and once more with fentry and each thread's in-flight invalidation
   in a hash keyed by thread id, as on kernels before 5.12 (`inflight=hash`; 5.12+ keep
   it in task-local storage: no hash insert and delete per invalidation); between runs
   its probes are detached and re-attached by group
   (`bench/toggle.py`), since a loaded but unattached BPF program costs nothing. States:
   `off` (nothing attached), `core` (the core start/end probes, plus registration and
   OOM probes, which do not fire here), `full` (also the per-notifier callback
   kprobes: mnmon as it runs). mnmon enables no `syscalls:*` tracepoint (one would send
   every syscall of every task down the slow path). Repetitions alternate the state
   order (off..full, full..off); each runs every mode once per state, after an untimed
   warm-up run (attaching patches kernel text, which makes the emulator translate it
   again). Emulated time ratio (shown beside the instruction ratio, not judged: it
   follows the shared host's load): the median of the per-repetition full/off ratios
   (their range in brackets); added ns:
   median(full) - median(off), split by state into core and callbacks.
   Callback probes are kprobes with either method (bcc 0.26 cannot fentry module
   functions). Probe hits and BPF time per invalidation come from three separate runs
   per mode with `kernel.bpf_stats_enabled=1` (run_cnt, run_time_ns in each program's
   fdinfo; medians).
2. **Exactness under load.** One churn of the interval notifier for a million
   iterations; mnmon's `mnmon_notifier_invalidations_total` for the callback, the
   fixture's own count in debugfs and `mnmon_events_lost_total` are compared.
3. **Footprint.** The benchmark process holds the monitor, like `mnmon serve`, and
   lives the daemon's life before the overhead runs re-attach probes many times:
   `Monitor.start()` time (bcc compiles the BPF C), VmRSS of `/proc/self/status`
   after start and after an hour-equivalent of work (240 `/metrics` requests to the
   exporter's own HTTP server in the process, as Prometheus makes them: OpenMetrics,
   gzip, keep-alive; each a `snapshot()` of the maps; with 3 discovery
   `refresh()`es per scrape as at the default 5 s interval; every 12th refresh, once a
   minute, hands malloc's free heap back with `malloc_trim(0)`). CPU: the process's CPU
   time (all threads, less the scraping client's, which stands in for Prometheus)
   doing the daemon's duty cycle with no load: three windows of 15 s, each one
   scrape and three refreshes (the median window counts), and the same
   duty cycle during the million-invalidation run. BPF programs run in the context of
   the task that invalidates, so their cost is in the overhead rows, not here. Under
   emulation a busy host inflates CPU times: the guest's clock runs while its vCPU
   thread waits for a host CPU.
4. **Scrape cost.** A synthetic map dump with 100 notifiers (half list with an end
   callback, half interval), every mode and result, every latency bucket, reap blockers,
   through `monitor.read.reading.collect`, `monitor.export.exposition` and the exporter's
   HTTP server, requested as Prometheus does (OpenMetrics, gzip; the exporter's own
   path, without reading maps). Median of 30 requests. It needs no BPF: `python -m bench --only scrape` runs it
   on the host, on real hardware.

Peer reference: cloudflare/ebpf_exporter's published per-probe cost on bare metal
(fentry +24 ns, kprobe +137 ns, a map update about +100 ns, over a 117 ns getpid).
"""


@dataclass
class Row:
    target: str
    measured: str
    peer: str = ""
    result: str = "info"          # PASS | MISS | info


def verdict(ok):
    return "PASS" if ok else "MISS"


def table(rows):
    """Plain-text table for the terminal."""
    head = Row("target", "measured", "peer (ebpf_exporter, bare metal)", "result")
    cols = [[r.target, r.measured, r.peer, r.result] for r in [head] + rows]
    widths = [max(len(c[i]) for c in cols) for i in range(4)]
    fmt = lambda c: "  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip()
    return "\n".join([fmt(cols[0]), "  ".join("-" * w for w in widths)] + [fmt(c) for c in cols[1:]])


def markdown(rows):
    esc = lambda s: s.replace("|", "\\|")
    out = ["| target | measured | peer (ebpf_exporter, bare metal) | result |", "|---|---|---|---|"]
    out += [f"| {esc(r.target)} | {esc(r.measured)} | {esc(r.peer)} | {r.result} |" for r in rows]
    return "\n".join(out)


def us(ns):
    return f"{ns / 1e3:.2f} us"
