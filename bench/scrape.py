"""Scrape cost: /metrics rendered from synthetic map contents, no BPF needed.

synthetic_raw(n) is what read_raw() would return with n notifiers that have seen
every label set: both modes, every result, every latency bucket, ends, reap
blockers. The rendering is the exporter's own path: monitor.readers.build_snapshot,
then the collector's families and prometheus_client's exposition of the registry.
"""
import statistics
import time
from dataclasses import dataclass

from prometheus_client import generate_latest

from monitor import readers
from monitor.metrics import MODES, RESULTS

BASE_IP = 0xFFFFFFFFC0000000
# A probe status list like the plan's on a 6.1 kernel.
CORE_PROBES = (("invalidate_range_start", "fentry"), ("invalidate_range_end", "fentry"),
               ("notifier_register", "kprobe"), ("interval_notifier_insert", "kprobe"),
               ("oom_reap_task_mm", "fentry"), ("oom_reaper_gave_up", "kprobe"),
               ("oom:mark_victim", "tracepoint"), ("oom:start_task_reaping", "tracepoint"),
               ("oom:skip_task_reaping", "tracepoint"), ("syscalls:sys_enter_process_mrelease", "tracepoint"),
               ("syscalls:sys_exit_process_mrelease", "tracepoint"))
LAT_SLOTS = range(10, 34)          # every bucket of monitor.metrics.LATENCY_BUCKETS gets mass


@dataclass(frozen=True)
class FakeStatus:
    probe: str
    method: str
    attached: bool = True
    reason: str = ""


def synthetic(n=100):
    """(raw, resolve, attached_callbacks, statuses) of n notifiers, half list (with an
    end callback), half interval, spread over n // 10 + 1 modules."""
    names, cbs, ips = {}, [], []
    for i in range(n):
        module = f"drv{i % (n // 10 + 1)}"
        kind = "list" if i % 2 == 0 else "interval"
        ip = BASE_IP + i * 0x1000
        names[ip] = (f"drv_notifier_{i}_invalidate", module)
        cbs.append((names[ip][0], module, kind))
        ips.append((ip, 0 if kind == "list" else 1))
        if kind == "list":
            names[ip + 0x800] = (f"drv_notifier_{i}_end", module)
            cbs.append((names[ip + 0x800][0], module, "list_end"))
    raw = {
        "invalidate_starts": [1000 + i for i in range(len(MODES) * len(RESULTS))],
        "invalidations_by_event": [10] * 16,
        "invalidate_ends": [5000],
        "invalidate_start_latency": [3] * (len(MODES) * readers.NR_LAT_SLOTS),
        "invalidate_start_latency_sum_ns": [123456, 654321],
        "unpaired_starts": [0],
        "unattributed_failures": [1] * (len(MODES) * len(RESULTS)),
        "oom_victims": [3], "oom_reap_attempts": [3, 30, 1], "oom_reap_calls": [1] * 9,
        "oom_reaper_gave_up": [3], "oom_reap_latency": [2] * readers.NR_LAT_SLOTS,
        "oom_reap_latency_sum_ns": [99999], "events_lost": [0],
        "notifier_invalidations": {(ip, kind, m, r): 7 for ip, kind in ips
                                   for m in range(len(MODES)) for r in range(len(RESULTS))},
        "notifier_latency": {(ip, m, s): 5 for ip, _ in ips for m in range(len(MODES)) for s in LAT_SLOTS},
        "notifier_latency_sum_ns": {(ip, m): 5000 for ip, _ in ips for m in range(len(MODES))},
        "notifier_ends": {ip + 0x800: 9 for ip, kind in ips if kind == 0},
        "oom_reap_blocked": {ip: 10 for ip, _ in ips},
    }
    statuses = [FakeStatus(p, m) for p, m in CORE_PROBES] + \
        [FakeStatus(f"notifier:{sym}", "kprobe") for sym, _, _ in cbs]
    resolve = lambda ip: names.get(ip, ("unknown", "unknown"))
    return raw, resolve, cbs, statuses


class SyntheticMonitor:
    """Quacks like monitor.probes.Monitor for the collector: snapshot() from synthetic maps."""

    def __init__(self, n=100):
        self.raw, self.resolve, self.cbs, self.statuses = synthetic(n)

    def snapshot(self):
        s = readers.build_snapshot(self.raw, self.resolve, self.cbs, self.statuses)
        s.add("mnmon_events_lost_total", 0)
        return s


def registry_for(monitor):
    """The exporter's registry for monitor (monitor.collector's, where it exists)."""
    try:
        from monitor.collector import registry_for as real
    except ImportError:                 # before the collector existed: render the Snapshot ourselves
        return _FlatRegistry(monitor)
    return real(monitor)


class _FlatRegistry:
    def __init__(self, monitor):
        self.monitor = monitor

    def render(self):
        return "".join(f"{n}{{{','.join(f'{k}={v!r}' for k, v in l.items())}}} {v}\n"
                       for n, l, v in self.monitor.snapshot().flat()).encode()


def render(registry):
    """One /metrics body."""
    return registry.render() if isinstance(registry, _FlatRegistry) else generate_latest(registry)


@dataclass
class ScrapeCost:
    median_ms: float
    p90_ms: float
    samples: int
    series: int
    body_bytes: int


def measure(registry, repeats=30, warmup=3):
    """Median and p90 wall time of rendering registry's /metrics."""
    body = b""
    for _ in range(warmup):
        body = render(registry)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        body = render(registry)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    lines = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
    return ScrapeCost(statistics.median(times), times[int(0.9 * (len(times) - 1))], len(times),
                      len(lines), len(body))


def synthetic_cost(n=100, repeats=30):
    return measure(registry_for(SyntheticMonitor(n)), repeats)


def stages(n=100, repeats=10):
    """Median ms of each stage of a synthetic render: build_snapshot, the collector's
    families, text exposition -- where the time goes when the target is missed."""
    from prometheus_client import CollectorRegistry
    try:
        from monitor.collector import families
    except ImportError:
        return {}
    mon = SyntheticMonitor(n)
    snap = mon.snapshot()
    fams = families(snap)

    class Fixed:
        def collect(self):
            return fams

        def describe(self):
            return []
    reg = CollectorRegistry()
    reg.register(Fixed())

    def med(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    return {"build_snapshot": med(mon.snapshot), "families": med(lambda: families(snap)),
            "exposition": med(lambda: generate_latest(reg))}
