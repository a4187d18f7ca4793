"""Scrape cost: /metrics rendered from synthetic map contents, no BPF needed.

synthetic_raw(n) is what read_raw() would return with n notifiers that have seen
every label set: both modes, every result, every latency bucket, ends, reap
blockers. The rendering is the exporter's own path: monitor.read.reading.collect (each
concern's maps read on their own), then monitor.export.exposition's OpenMetrics text, gzip and HTTP: a /metrics request to the
exporter's own server, with the headers Prometheus sends.
"""
import gzip
import http.client
import statistics
import time
from dataclasses import dataclass

from monitor.plan import catalogue
from monitor.export import collector
from monitor.plan import coverage
from monitor.export import exposition
from monitor.read import reading
from monitor.read import readers
from monitor.settings.config import Settings
from monitor.export.metrics import MODES, RESULTS
from monitor.web.server import Exporter

BASE_IP = 0xFFFFFFFFC0000000
# A probe status list like the plan's on a kernel that has everything (each probe by its preferred method).
CORE_PROBES = tuple(catalogue.first_methods())
LAT_SLOTS = range(10, 34)          # every bucket of monitor.export.metrics.LATENCY_BUCKETS gets mass


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
    """Quacks like monitor.attach.session.Monitor for the collector: snapshot() from synthetic maps,
    read per concern as the monitor reads its maps. broken: maps whose read fails."""

    def __init__(self, n=100, broken=(), failures=None):
        self.raw, self.resolve, self.cbs, self.statuses = synthetic(n)
        self.broken = set(broken)
        self.failures = failures or reading.Failures()
        self.ctx = readers.Context(self.resolve, tuple(self.cbs), coverage.measure(self.statuses))

    def read(self, maps):
        if bad := self.broken & set(maps):
            raise OSError(f"cannot read {', '.join(sorted(bad))}")
        return {k: v for k, v in self.raw.items() if k in _fields_of(maps)}

    def snapshot(self):
        s = reading.collect(self.read, self.ctx, self.failures)
        readers.probes_attached(s, self.statuses)
        return s


def _fields_of(maps):
    """The raw keys read_raw() gives for maps (core_stats is a record of several)."""
    out = set(maps)
    if "core_stats" in maps:
        out |= set(readers.CORE_STATS)
    if "notifier_invalidations" in maps:
        out.add("notifier_latency_sum_ns")
    return out


# What Prometheus 2.x/3.x sends when it scrapes: OpenMetrics first, gzip.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
                     "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")


def registry_for(monitor):
    """The exporter's registry for monitor."""
    return collector.registry_for(monitor)


class Scraper:
    """The exporter's own HTTP server on 127.0.0.1, scraped as Prometheus does it:
    one keep-alive connection, its Accept header, gzip. scrape() -> the decoded body."""

    def __init__(self, registry):
        self.exporter = Exporter(registry, Settings(listen_address="127.0.0.1:0"))
        self.exporter.start()
        self.conn = http.client.HTTPConnection(*self.exporter.address, timeout=30)
        # CPU this client spent (request, parsing, gunzip): Prometheus's, not the daemon's.
        # The server answers in its own thread, so the calling thread's CPU is the client's.
        self.client_cpu_s = 0.0

    def scrape(self):
        c = time.thread_time()
        self.conn.request("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT,
                                                      "Accept-Encoding": "gzip"})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/metrics: HTTP {resp.status}")
        out = gzip.decompress(body) if resp.getheader("Content-Encoding") == "gzip" else body
        self.client_cpu_s += time.thread_time() - c
        return out

    def close(self):
        self.conn.close()
        self.exporter.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class ScrapeCost:
    median_ms: float
    p90_ms: float
    samples: int
    series: int
    body_bytes: int


def measure(scrape, repeats=30, warmup=3):
    """Median and p90 wall time of scrape() (a /metrics request)."""
    body = b""
    for _ in range(warmup):
        body = scrape()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        body = scrape()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    lines = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
    return ScrapeCost(statistics.median(times), times[int(0.9 * (len(times) - 1))], len(times),
                      len(lines), len(body))


def synthetic_cost(n=100, repeats=30):
    with Scraper(registry_for(SyntheticMonitor(n))) as s:
        return measure(s.scrape, repeats)


def stages(n=100, repeats=10):
    """Median ms of each stage of a synthetic scrape: the Snapshot from the maps' contents,
    its OpenMetrics text, gzip -- where the time goes when the target is missed."""
    registry = registry_for(SyntheticMonitor(n))
    snap = registry.source.snapshot()
    body = registry.encode(openmetrics=True)

    def med(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    return {"snapshot": med(registry.source.snapshot),
            "exposition": med(lambda: exposition.render(snap, openmetrics=True)),
            "gzip": med(lambda: gzip.compress(body, compresslevel=1))}
