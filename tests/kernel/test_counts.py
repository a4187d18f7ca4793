"""The counts configuration (probes.latency: off) on the real kernel: an fexit on the core
start and an fentry on its end, no callback probes, and every count against ground truth:
KVM's own trace of its notifier's calls, the fixture's own counts, the oom:* tracepoints
and the kernel's log."""
import re

import pytest

from bed import scenarios
from bed.evidence import kvm_invalidations
from bed.fixture_dev import read_stats
from monitor.plan.decisions import Off
from tests.kernel import kernel_facts
from tests.kernel.test_bed import MAX_OOM_REAP_RETRIES
from tests.kernel.test_probes import (B, EXIT_MMAP_CALLS, KVM_END, KVM_START, NB, REAP_CALLS, _oom_scenario, drain,
                                      fdelta, notifier, value)

pytestmark = pytest.mark.skipif(not kernel_facts.at_least(5, 6), reason="counts needs the subscription walk (5.6+)")

LATENCY_FAMILIES = ("mnmon_notifier_invalidation_duration_seconds", "mnmon_invalidate_range_start_duration_seconds")


@pytest.fixture(scope="module")
def mon():
    from monitor.attach.session import Monitor
    m = Monitor.start(latency="off")
    m.received = []
    m.open_events(m.received.append)
    yield m
    m.close()


def test_counts_attaches_two_programs_on_the_path_and_says_what_it_left_off(mon):
    st = mon.statuses
    assert (st["invalidate_range_start"].method, st["invalidate_range_start"].attached) == ("counts-fexit", True)
    assert (st["invalidate_range_end"].method, st["invalidate_range_end"].attached) == ("fentry", True)
    assert (st["list_failure_log"].method, st["list_failure_log"].attached) == ("fentry", True)
    for name in ("notifier_register", "interval_notifier_insert"):
        assert st[name].off is Off.COUNTS and not st[name].attached, st[name]
    assert st["notifier_release"].attached and st["oom_reap_task_mm"].attached
    cov = mon.coverage
    assert cov.counts and cov.ends and cov.walked and cov.per_notifier and not cov.timed
    assert mon.refresh() == [] and mon.callbacks == {}
    snap = mon.snapshot()
    assert snap.get("mnmon_probe_attached", probe="invalidate_range_start", method="counts-fexit") == 1
    for family in LATENCY_FAMILIES:
        assert snap.get(family) is None, f"{family} exported with latency off"


def test_kvm_calls_and_ends_equal_the_kernels_trace(mon):
    before = mon.snapshot()
    with kvm_invalidations() as hits:
        child = scenarios.run_kvm(iterations=300, pages=16)
    after = mon.snapshot()
    assert child.returncode == 0
    d = lambda snap, mode, result: notifier(snap, KVM_START[0], mode, result, module="kvm")
    ok = d(after, B, "ok") - d(before, B, "ok")
    assert hits.hits >= 300
    assert ok == hits.hits, f"mnmon counted {ok} KVM invalidations, the kernel traced {hits.hits}"
    ends = value(after, "mnmon_notifier_invalidate_range_end_total", notifier=KVM_END[0], module="kvm") - \
        value(before, "mnmon_notifier_invalidate_range_end_total", notifier=KVM_END[0], module="kvm")
    assert ends == ok
    assert value(after, "mnmon_events_lost_total") == value(before, "mnmon_events_lost_total")
    print(f"counts, KVM: calls {ok} == {hits.label} {hits.hits}; ends {ends}")


@pytest.mark.parametrize("kind", ["list", "interval"])
def test_blockable_calls_and_ends_equal_the_fixtures_counts(mon, kind):
    sym = f"mnmon_fx_{kind}_never_fail" + ("_start" if kind == "list" else "")
    before = mon.snapshot()
    # both read while the churn's mm lives: its teardown calls come after
    child = scenarios.run_churn(kind=kind, behaviour="never_fail", iterations=500,
                                at_done=lambda: (read_stats(), mon.snapshot()))
    assert child.returncode == 0
    fixture, after = child.at_done
    fx = fixture[child.info["slot"]]
    assert fx.blockable_ok >= 500
    d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    calls = d("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture", kind=kind, mode=B,
              result="ok")
    assert calls == fx.blockable_ok, f"{kind}: mnmon {calls}, fixture {fx.blockable_ok}"
    if kind == "list":
        ends = d("mnmon_notifier_invalidate_range_end_total", notifier="mnmon_fx_list_never_fail_end",
                 module="mnmon_fixture")
        assert ends == fx.blockable_ends, f"ends: mnmon {ends}, fixture {fx.blockable_ends}"
    starts = d("mnmon_invalidate_range_start_total", mode=B, result="ok")
    assert starts >= fx.blockable_ok
    # every start that succeeded ends: in progress stays where it was
    assert d("mnmon_invalidate_range_end_total") >= starts - 2
    assert d("mnmon_events_lost_total") == 0
    print(f"counts, {kind}: blockable calls {calls} == fixture {fx.blockable_ok}")


def test_the_kernels_log_names_which_of_two_list_notifiers_failed(mon):
    a_start, b_start = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_fail_nonblock_start"
    child, delta, fx, tp, lines, events = _oom_scenario(mon, (), lists=[("A", "never_fail"), ("B", "fail_nonblock")])
    assert child.returncode == -9
    nd = lambda sym, mode, result: delta("mnmon_notifier_invalidations_total", notifier=sym,
                                         module="mnmon_fixture", kind="list", mode=mode, result=result)
    b_fail = fdelta(fx, "B", "nonblockable_fail")
    assert b_fail > 0
    logged = len([line for line in lines if "callback failed with -11 in non-blockable context" in line])
    assert logged == b_fail
    for name, sym in (("A", a_start), ("B", b_start)):
        assert nd(sym, NB, "eagain") == fdelta(fx, name, "nonblockable_fail"), name
        assert nd(sym, NB, "ok") == fdelta(fx, name, "nonblockable_ok"), name
        assert nd(sym, B, "ok") == fdelta(fx, name, "blockable_ok"), name
        assert nd(sym, NB, "unobserved") == nd(sym, B, "unobserved") == 0, name
    assert delta("mnmon_invalidate_range_start_total", mode=NB, result="eagain") == b_fail
    assert delta("mnmon_oom_reap_blocked_total", notifier=b_start, module="mnmon_fixture") == MAX_OOM_REAP_RETRIES
    assert delta("mnmon_oom_reap_blocked_total", notifier=a_start, module="mnmon_fixture") == 0
    unable = [line for line in lines if re.search(rf"oom_reaper: unable to reap pid:{child.pid}\b", line)]
    assert delta("mnmon_oom_reaper_gave_up_total") == len(unable) == 1
    attempts = [e for e in events if e.type == "reap_attempt" and e.pid == child.pid]
    assert {mon.symbols.resolve(e.ip)[0] for e in attempts} == {b_start}
    print(f"counts, A+B OOM: B eagain {nd(b_start, NB, 'eagain')} == fixture {b_fail} == kernel log {logged}; "
          f"A nonblockable ok {nd(a_start, NB, 'ok')} == fixture {fdelta(fx, 'A', 'nonblockable_ok')}")


def test_a_lone_interval_that_blocked_the_reaper_is_named(mon):
    sym = "mnmon_fx_interval_fail_nonblock"
    child, delta, fx, tp, lines, events = _oom_scenario(mon, (), interval="fail_nonblock")
    assert child.returncode == -9
    got = delta("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture", kind="interval",
                mode=NB, result="eagain")
    assert got == fdelta(fx, "interval", "nonblockable_fail") == REAP_CALLS
    assert delta("mnmon_oom_reap_calls_total", caller="oom_reaper", result="notifier_blocked") == MAX_OOM_REAP_RETRIES
    assert delta("mnmon_oom_reap_calls_total", caller="exit_mmap", result="notifier_blocked") == EXIT_MMAP_CALLS
    assert delta("mnmon_oom_reap_blocked_total", notifier=sym, module="mnmon_fixture") == REAP_CALLS
    assert delta("mnmon_oom_reaper_gave_up_total") == 1
    drain(mon)
    print(f"counts, interval OOM: nonblockable eagain {got} == fixture {fdelta(fx, 'interval', 'nonblockable_fail')}")
