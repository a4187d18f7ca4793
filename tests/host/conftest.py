"""Fixtures of the host tier.

exporter_url is the /metrics page tests/host/test_prometheus_queries.py has a real
Prometheus scrape. For now it is a STAND-IN (see StandInCollector) until
`mnmon serve` can run here; then this fixture should start that instead.
"""
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from monitor.metrics import FAMILIES
from monitor.model import Snapshot, log2_histogram

# One value for every label name in monitor.metrics.
LABEL_VALUES = {
    "mode": "nonblockable", "result": "eagain", "kind": "list", "event": "MMU_NOTIFY_UNMAP",
    "notifier": "kvm_mmu_notifier_invalidate_range_start", "module": "kvm", "caller": "oom_reaper",
    "probe": "invalidate_range_start", "method": "kprobe",
    "version": "0.0.0-stand-in", "bcc_version": "0.26.0", "kernel": "6.1.0-stand-in",
}
# Where the family's own value set says otherwise.
FAMILY_LABEL_VALUES = {
    "mnmon_oom_reap_attempts_total": {"result": "notifier_blocked"},
    "mnmon_oom_reap_calls_total": {"result": "notifier_blocked"},
}
GAUGE_VALUES = {"mnmon_probe_attached": 1, "mnmon_build_info": 1, "mnmon_invalidations_in_progress": 2,
                "mnmon_scrape_duration_seconds": 0.003}


def stand_in_snapshot(n):
    """One series of every family; counters and histograms grow with n (the scrape count)."""
    s = Snapshot()
    for name, fam in FAMILIES.items():
        labels = {lbl: FAMILY_LABEL_VALUES.get(name, {}).get(lbl, LABEL_VALUES[lbl]) for lbl in fam.labels}
        if fam.type == "histogram":
            value = log2_histogram({12: 3 * n, 20: n}, total_ns=n * (3 * 6000 + 1_500_000))
        elif fam.type == "counter":
            value = 5 * n
        else:
            value = GAUGE_VALUES[name]
        s.set(name, value, **labels)
    return s


def families(snapshot):
    """prometheus_client metric families of a Snapshot (a stand-in's rendering, not mnmon's)."""
    for name, fam in FAMILIES.items():
        series = snapshot.family(name)
        if not series:
            continue
        if fam.type == "histogram":
            m = HistogramMetricFamily(name, fam.help, labels=fam.labels)
            for labels, h in series:
                m.add_metric([labels[k] for k in fam.labels], [(floatToGoString(le), n) for le, n in h.buckets], h.sum)
        else:
            m = (CounterMetricFamily if fam.type == "counter" else GaugeMetricFamily)(name, fam.help, labels=fam.labels)
            for labels, v in series:
                m.add_metric([labels[k] for k in fam.labels], v)
        yield m


class StandInCollector:
    """STAND-IN for `mnmon serve`: every family of monitor.metrics with one series, values
    growing at each scrape so rate() and increase() have something to show. It exercises
    dashboards and rules against the contract, not mnmon's own collection or rendering.

    Series (n = scrape count), e.g.:
        mnmon_notifier_invalidations_total{notifier="kvm_mmu_notifier_invalidate_range_start",
            module="kvm",kind="list",mode="nonblockable",result="eagain"} 5n
        mnmon_oom_reap_duration_seconds_bucket{le="8.192e-06"} 3n ... {le="+Inf"} 4n
        mnmon_probe_attached{probe="invalidate_range_start",method="kprobe"} 1
    """

    def __init__(self):
        self.scrapes = 0

    def collect(self):
        self.scrapes += 1
        yield from families(stand_in_snapshot(self.scrapes))

    def describe(self):
        return []       # no collect() at registration


@pytest.fixture(scope="session")
def exporter_url():
    """A /metrics URL on loopback that exports every mnmon family (the stand-in, for now)."""
    registry = CollectorRegistry()
    registry.register(StandInCollector())
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(5)

