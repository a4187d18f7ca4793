"""log2 slots -> cumulative buckets, and the Snapshot every rendering shares."""
import re

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString

from monitor.export.metrics import LATENCY_BUCKETS
from monitor.export.model import Histogram, ModelError, Snapshot, log2_histogram

INF = float("inf")


def test_latency_buckets_are_powers_of_two_nanoseconds():
    assert len(LATENCY_BUCKETS) == 24
    assert LATENCY_BUCKETS[0] == 1024e-9 and LATENCY_BUCKETS[-1] == 8.589934592


@pytest.mark.parametrize("slot, le", [
    (0, 1.024e-06),          # [1, 2) ns and everything below 1 us: the first bucket
    (9, 1.024e-06),          # [512, 1024) ns -> le = 2^10 ns
    (10, 2.048e-06),         # [1024, 2048) ns -> le = 2^11 ns
    (19, 0.001048576),       # [2^19, 2^20) ns -> le = 2^20 ns
    (32, 8.589934592),       # [2^32, 2^33) ns: the last finite bucket
    (33, INF),               # beyond: only +Inf
    (63, INF),
])
def test_slot_goes_under_le_two_to_the_slot_plus_one(slot, le):
    h = log2_histogram({slot: 7}, 0)
    first = next(b for b, n in h.buckets if n)
    assert first == le
    assert all(n == 0 for b, n in h.buckets if b < le)
    assert all(n == 7 for b, n in h.buckets if b >= le)


def test_histogram_is_cumulative_and_ends_with_inf():
    h = log2_histogram({12: 2, 9: 3, 40: 1, 20: 4}, 2_500_000_123)
    assert h.buckets == (
        (1.024e-06, 3), (2.048e-06, 3), (4.096e-06, 3), (8.192e-06, 5), (1.6384e-05, 5), (3.2768e-05, 5),
        (6.5536e-05, 5), (0.000131072, 5), (0.000262144, 5), (0.000524288, 5), (0.001048576, 5),
        (0.002097152, 9), (0.004194304, 9), (0.008388608, 9), (0.016777216, 9), (0.033554432, 9),
        (0.067108864, 9), (0.134217728, 9), (0.268435456, 9), (0.536870912, 9), (1.073741824, 9),
        (2.147483648, 9), (4.294967296, 9), (8.589934592, 9), (INF, 10))
    assert h.count == 10
    assert h.sum == 2.500000123


def test_empty_histogram():
    h = log2_histogram({}, 0)
    assert h.buckets == tuple((le, 0) for le in LATENCY_BUCKETS) + ((INF, 0),)
    assert h.count == 0 and h.sum == 0.0


def test_histogram_with_other_bounds():
    h = log2_histogram({0: 1, 1: 1, 2: 1}, 9, bounds=(2e-9, 4e-9))
    assert h.buckets == ((2e-9, 1), (4e-9, 2), (INF, 3))
    assert h.sum == 9e-9


def test_set_get_and_add():
    s = Snapshot()
    s.set("mnmon_oom_victims_total", 3)
    s.add("mnmon_oom_victims_total", 2)
    s.add("mnmon_oom_reap_blocked_total", 1, notifier="nouveau_svm_range_invalidate", module="nouveau")
    s.add("mnmon_oom_reap_blocked_total", 4, module="nouveau", notifier="nouveau_svm_range_invalidate")
    assert s.get("mnmon_oom_victims_total") == 5
    assert s.get("mnmon_oom_reap_blocked_total", notifier="nouveau_svm_range_invalidate", module="nouveau") == 5
    assert s.get("mnmon_oom_reap_blocked_total", notifier="other", module="nouveau") is None


@pytest.mark.parametrize("name, value, labels, message", [
    ("mnmon_no_such_family", 1, {}, "mnmon_no_such_family: not a family in monitor.export.metrics"),
    ("mnmon_oom_victims_total", 1, {"pid": "1"}, r"labels \['pid'\] != \[\]"),
    ("mnmon_oom_reap_attempts_total", 1, {}, r"labels \[\] != \['result'\]"),
    ("mnmon_oom_reap_calls_total", 1, {"caller": "oom_reaper"}, r"labels \['caller'\] != \['caller', 'result'\]"),
    ("mnmon_oom_reap_duration_seconds", 3, {}, "histogram family given int"),
    ("mnmon_oom_victims_total", Histogram(((INF, 0),), 0.0), {}, "counter family given Histogram"),
    ("mnmon_invalidations_in_progress", Histogram(((INF, 0),), 0.0), {}, "gauge family given Histogram"),
])
def test_set_rejects(name, value, labels, message):
    with pytest.raises(ModelError, match=message):
        Snapshot().set(name, value, **labels)


def test_family_is_ordered_by_labels():
    s = Snapshot()
    for result, n in (("skipped", 1), ("reaped", 2), ("notifier_blocked", 3)):
        s.set("mnmon_oom_reap_attempts_total", n, result=result)
    s.set("mnmon_oom_victims_total", 9)
    assert s.family("mnmon_oom_reap_attempts_total") == [
        ({"result": "notifier_blocked"}, 3), ({"result": "reaped"}, 2), ({"result": "skipped"}, 1)]
    assert s.family("mnmon_oom_reaper_gave_up_total") == []


def test_flat_expands_histograms_like_the_exposition():
    s = Snapshot()
    h = log2_histogram({9: 1, 33: 1}, 3_000_000_000)
    s.set("mnmon_oom_reap_duration_seconds", h)
    s.set("mnmon_oom_victims_total", 2)
    flat = s.flat()
    assert flat[0] == ("mnmon_oom_reap_duration_seconds_bucket", {"le": "1.024e-06"}, 1.0)
    assert flat[23] == ("mnmon_oom_reap_duration_seconds_bucket", {"le": "8.589934592"}, 1.0)
    assert flat[24] == ("mnmon_oom_reap_duration_seconds_bucket", {"le": "+Inf"}, 2.0)
    assert flat[25:] == [("mnmon_oom_reap_duration_seconds_sum", {}, 3.0),
                         ("mnmon_oom_reap_duration_seconds_count", {}, 2.0),
                         ("mnmon_oom_victims_total", {}, 2.0)]
    assert all(isinstance(v, float) for _, _, v in flat)
    assert [lbl["le"] for _, lbl, _ in flat[:25]] == [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]


def test_flat_le_labels_match_prometheus_client_exposition():
    """prometheus_client's own Histogram, given the same bounds, spells le as flat() does."""
    s = Snapshot()
    s.set("mnmon_notifier_invalidation_duration_seconds", log2_histogram({15: 4}, 100_000),
          notifier="f", module="m", mode="nonblockable")
    ours = [lbl["le"] for name, lbl, _ in s.flat() if name.endswith("_bucket")]
    reg = CollectorRegistry()
    theirs_h = prometheus_client.Histogram("x_seconds", "x", buckets=LATENCY_BUCKETS, registry=reg)
    theirs_h.observe(0.0001)
    text = generate_latest(reg).decode()
    theirs = re.findall(r'^x_seconds_bucket\{le="([^"]+)"\}', text, re.M)
    assert ours == theirs
    assert len(ours) == 25 and ours[-1] == "+Inf"
