"""monitor.export.exposition writes what prometheus_client writes for the same Snapshot, byte for byte."""
import gzip

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from bench.scrape import SyntheticMonitor
from monitor.export import collector
from monitor.export import exposition
from monitor.export.model import Snapshot, log2_histogram

OM = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"


class Fixed:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def reference(snapshot, openmetrics):
    """What prometheus_client writes for the collector's families of snapshot."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed(collector.families(snapshot)))
    return (om_latest if openmetrics else text_latest)(reg).decode()


def awkward():
    s = Snapshot()
    s.set("mnmon_oom_victims_total", 3)
    s.set("mnmon_invalidate_range_end_total", 12345678901234)          # Go writes 1.2345678901234e+13
    s.set("mnmon_scrape_duration_seconds", 0.000123)
    s.set("mnmon_oom_reap_duration_seconds", log2_histogram({12: 2, 40: 1}, 5000))   # no labels; +Inf mass
    s.set("mnmon_notifier_invalidations_total", 7, notifier='we"ird\\name\nx', module="m", kind="list",
          mode="blockable", result="ok")
    s.set("mnmon_notifier_invalidation_duration_seconds", log2_histogram({11: 4}, 9e9),
          notifier="a", module="kvm", mode="nonblockable")
    s.set("mnmon_build_info", 1, version="0.1", bcc_version="0.26.0", kernel="6.1.0-56-amd64")
    s.set("mnmon_scrape_collector_success", 0, collector="notifiers")       # a concern that failed
    s.set("mnmon_scrape_collector_duration_seconds", 1.5e-05, collector="notifiers")
    return s


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
@pytest.mark.parametrize("snapshot", [SyntheticMonitor(100).snapshot, awkward, Snapshot],
                         ids=["100 notifiers", "escapes and numbers", "empty"])
def test_same_bytes_as_prometheus_client(snapshot, openmetrics):
    snap = snapshot()
    ours = exposition.render(snap, openmetrics) + ("# EOF\n" if openmetrics else "")
    assert ours == reference(snap, openmetrics)


def test_synthetic_body_is_big_enough_to_matter():
    # The equality above must cover histograms with labels on both sides of "le".
    text = exposition.render(SyntheticMonitor(100).snapshot())
    assert 'mnmon_notifier_invalidation_duration_seconds_bucket{le="+Inf",mode=' in text
    assert text.count("\n") > 6000


def test_parsers_read_our_output_back():
    snap = awkward()
    fams = {f.name: f for f in text_parse(exposition.render(snap))}
    [s] = fams["mnmon_notifier_invalidations"].samples
    assert s.labels["notifier"] == 'we"ird\\name\nx' and s.value == 7
    om = {f.name: f for f in om_parse(exposition.render(snap, True) + "# EOF\n")}
    assert om["mnmon_invalidate_range_end"].samples[0].value == 12345678901234


def registry():
    return collector.registry_for(SyntheticMonitor(10))


def test_encode_follows_accept_header():
    reg = registry()
    body, ctype = exposition.encode(reg, OM)
    assert ctype.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    assert b"# TYPE mnmon_oom_victims counter" in body and b"process_" in body
    body, ctype = exposition.encode(reg, "text/plain")
    assert ctype.startswith("text/plain; version=0.0.4") and b"# EOF" not in body
    assert b"# TYPE mnmon_oom_victims_total counter" in body


def test_name_selection_keeps_only_those_samples():
    body, _ = exposition.encode(registry(), None, ["mnmon_oom_victims_total", "process_open_fds"])
    lines = [l for l in body.decode().splitlines() if l and not l.startswith("#")]
    assert sorted(l.split()[0] for l in lines) == ["mnmon_oom_victims_total", "process_open_fds"]


def test_generic_consumers_still_see_every_family():
    names = {m.name for m in registry().collect()}
    assert {"mnmon_oom_victims", "mnmon_notifier_invalidations", "process_open_fds"} <= names


def test_served_body_is_the_encoded_one():
    from tests.unit.test_server import get, serving
    reg = registry()
    with serving(reg) as exporter:
        status, headers, body = get(exporter, headers={"Accept": OM, "Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(body).decode()
    assert body.endswith("# EOF\n")
    assert om_parse(body) and 'notifier="drv_notifier_0_invalidate"' in body
