"""A crowd of interval notifiers over one range, counted exactly, against the fixture's counts.

As a GPU driver's userptr buffers come: one interval notifier per buffer, a hundred over
the same range of one mm. The driver (built without BTF) is loaded after mnmon is ready,
and its process registers the crowd and churns at once; the daemon's refresh attaches the
callbacks' probes half-way. Before that the core probes count every call from the
interval tree (more than intervals[] holds: per callback, bpf/attribute.bpf.c
attribute_crowd()); after it, with every probe (latency full) the probes count their own
and the walk none of them; with latency sampled (the default) the walk counts every call and
the probes only time them.
"""
from collections import Counter

import pytest

from bed import late_driver
from bed.fixture_dev import read_stats
from tests.kernel import kernel_facts
from tests.kernel.test_first_invalidation import Refresher, attached, calls, load_fixture, timed, wait_attached

CROWD = 100
NEVER_FAIL, SLEEP = "mnmon_fx_interval_never_fail", "mnmon_fx_interval_sleep"
B, NB = "blockable", "nonblockable"
RESULTS = ("ok", "eagain", "error", "unobserved")


@pytest.fixture(scope="module", params=kernel_facts.latencies())
def mon(request):
    """The default configuration (latency sampled: the walk counts every call, callbacks'
    probes only time them), and every probe (latency full: the callbacks' probes count
    their own calls once attached, the walk the rest)."""
    from monitor.attach.session import Monitor
    late_driver.reload_fixture()
    m = Monitor.start(latency=request.param)
    assert m.coverage.counted, {k: v for k, v in m.statuses.items() if not v.attached}
    if not m.coverage.walked:
        m.close()
        pytest.skip(f"this kernel counts a notifier from its probes' attach only: {m.plan.walk_off.reason}")
    if m.windows:
        # the window held open from the start: the callbacks' probes time every call once
        # attached, as latency always does, so both halves of the churn show below
        m.windows.hold()
    yield m
    m.close()
    late_driver.reload_fixture(btf=True)       # the fixture as built, for the tests after these


def fixture_calls(fixture, slots):
    """{callback symbol: the crowd's blockable calls, as the fixture counted them}."""
    out = Counter()
    for slot in slots:
        s = fixture[slot]
        assert s.blockable_fail == s.nonblockable_ok == s.nonblockable_fail == 0, s
        out[s.start_fn] += s.blockable_ok
    return out


def test_a_crowd_of_interval_notifiers_is_counted_exactly(mon):
    iterations = 300
    load = load_fixture()
    before = mon.snapshot()
    lost = lambda snap: snap.get("mnmon_events_lost_total") or 0
    d = lambda snap, sym, mode, result: calls(snap, sym, mode, result, kind="interval") - \
        calls(before, sym, mode, result, kind="interval")
    with Refresher(mon):
        info, (fixture, during) = late_driver.run_register_and_churn(
            iterations, crowd=CROWD, at_done=lambda: (read_stats(), mon.snapshot()),
            pause_at=iterations // 2, at_pause=lambda: wait_attached(mon, load, NEVER_FAIL, SLEEP))
    slots = info["slots"]["crowd"]
    assert len(slots) == CROWD
    truth = fixture_calls(fixture, slots)
    # Every one of the crowd is called once per invalidation of the churned page.
    assert truth == {NEVER_FAIL: CROWD // 2 * iterations, SLEEP: CROWD // 2 * iterations}, truth
    assert attached(mon, NEVER_FAIL, load) and attached(mon, SLEEP, load)
    for sym in (NEVER_FAIL, SLEEP):
        assert d(during, sym, B, "ok") == truth[sym], (sym, d(during, sym, B, "ok"), truth[sym])
        for mode in (B, NB):
            for result in RESULTS:
                if (mode, result) != (B, "ok"):
                    assert d(during, sym, mode, result) == 0, (sym, mode, result)
    # Both sides counted: the walk before the hand-over, the callbacks' probes after it (only
    # their calls have a time).
    for sym in (NEVER_FAIL, SLEEP):
        probed = timed(during, sym, B) - timed(before, sym, B)
        assert 0 < probed < truth[sym], (sym, probed, truth[sym])
    for mode in (B, NB):
        for result in RESULTS:
            assert calls(during, "unattributed", mode, result, kind="interval") == 0
    assert lost(during) == lost(before)
    # The process's exit: munmap and the mm's teardown call every one of them again.
    after, fixture = mon.snapshot(), read_stats()
    truth = fixture_calls(fixture, slots)
    for sym in (NEVER_FAIL, SLEEP):
        assert d(after, sym, B, "ok") == truth[sym], (sym, d(after, sym, B, "ok"), truth[sym])
    assert lost(after) == lost(before)
    print(f"crowd of {CROWD} over one range, {iterations} invalidations: "
          + ", ".join(f"{s} {d(after, s, B, 'ok')} == fixture {truth[s]}" for s in (NEVER_FAIL, SLEEP)))
