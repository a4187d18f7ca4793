"""The Prometheus side of the one model: a collector that reads the BPF maps at
scrape time (no timers of its own).

    mnmon_* families of monitor/export/metrics.py, plus mnmon_build_info and
    mnmon_scrape_duration_seconds, plus the default process metrics.

The exporter writes the Snapshot itself (monitor.export.exposition); families() gives the
same numbers as prometheus_client metric families for everything else.
"""
import platform
import time

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.export.exposition import Registry
from monitor.kernel.facts import bcc_version
from monitor.export.metrics import FAMILIES


def complete(snapshot, started):
    """Add the self-describing series every rendering shows: build info, collection time."""
    snapshot.set("mnmon_build_info", 1, version=__version__, bcc_version=bcc_version(),
                 kernel=platform.release())
    snapshot.set("mnmon_scrape_duration_seconds", time.monotonic() - started)
    return snapshot


def families(snapshot):
    """prometheus_client metric families of a Snapshot, one per family that has series."""
    out = {}
    for (name, lbl), value in sorted(snapshot.series.items()):
        fam = FAMILIES[name]
        labels = list(fam.labels)
        if name not in out:
            cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
                   "histogram": HistogramMetricFamily}[fam.type]
            out[name] = cls(name, fam.help, labels=labels)
        values = [dict(lbl)[k] for k in labels]
        if fam.type == "histogram":
            out[name].add_metric(values, [(floatToGoString(le), n) for le, n in value.buckets], value.sum)
        else:
            out[name].add_metric(values, value)
    return list(out.values())


class MonitorCollector:
    """Reads the monitor's maps on every collect()."""

    def __init__(self, monitor):
        self.monitor = monitor

    def snapshot(self):
        t0 = time.monotonic()
        return complete(self.monitor.snapshot(), t0)

    def collect(self):
        return families(self.snapshot())

    def describe(self):
        # Without describe(), registering would collect() once: a needless map walk.
        return []


def registry_for(monitor):
    """A registry with mnmon's collector and the default process metrics."""
    return Registry(MonitorCollector(monitor), [ProcessCollector(registry=None), PlatformCollector(registry=None)])
