"""The lean configuration on the real kernel: one fexit per invalidation, and what it
keeps (core counts, each notifier's non-blockable outcomes, who blocked the reaper)
against ground truth: the fixture's own counts, the oom:* tracepoints."""
import pytest

from bed import scenarios
from tests.kernel import kernel_facts
from bed.fixture_dev import read_stats
from tests.kernel.test_bed import MAX_OOM_REAP_RETRIES
from tests.kernel.test_probes import B, NB, REAP_CALLS, _oom_scenario, drain, fdelta, value
from monitor.plan.decisions import Off

pytestmark = pytest.mark.skipif(not kernel_facts.at_least(5, 6), reason="lean needs the subscription walk (5.6+)")


@pytest.fixture(scope="module")
def mon():
    from monitor.attach.session import Monitor
    m = Monitor.start(lean=True)
    m.received = []
    m.open_events(m.received.append)
    yield m
    m.close()


def test_lean_attaches_one_fexit_and_says_what_it_left_off(mon):
    st = mon.statuses
    assert (st["invalidate_range_start"].method, st["invalidate_range_start"].attached) == ("lean-fexit", True)
    for name in ("invalidate_range_end", "notifier_register", "interval_notifier_insert", "notifier_release"):
        assert st[name].off is Off.LEAN and not st[name].attached, st[name]
    assert st["list_failure_log"].attached      # off the invalidation path: printk only
    assert st["oom_reap_task_mm"].attached
    assert mon.coverage.lean and not mon.coverage.ends and not mon.coverage.timed
    assert mon.refresh() == [] and mon.callbacks == {}
    snap = mon.snapshot()
    assert snap.get("mnmon_probe_attached", probe="invalidate_range_start", method="lean-fexit") == 1
    assert snap.get("mnmon_probe_attached", probe="invalidate_range_end", method="none") == 0


def test_lean_counts_blockable_starts_but_no_notifier_calls_of_them(mon):
    sym = "mnmon_fx_interval_never_fail"
    before = mon.snapshot()
    child = scenarios.run_churn(kind="interval", behaviour="never_fail", iterations=500)
    after = mon.snapshot()
    assert child.returncode == 0
    fixture = child.at_done[child.info["slot"]].blockable_ok
    assert fixture == 500
    core = value(after, "mnmon_invalidate_range_start_total", mode=B, result="ok") - \
        value(before, "mnmon_invalidate_range_start_total", mode=B, result="ok")
    assert core >= fixture          # every mm's invalidations, this one's among them
    # dropped in lean: each notifier's blockable calls, and the ends
    assert value(after, "mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture",
                 kind="interval", mode=B, result="ok") == 0
    assert value(after, "mnmon_invalidate_range_end_total") == value(before, "mnmon_invalidate_range_end_total")
    assert value(after, "mnmon_events_lost_total") == 0


def test_lean_names_a_lone_notifier_that_blocked_the_reaper(mon):
    b_start = "mnmon_fx_list_fail_nonblock_start"
    child, delta, fx, tp, lines, events = _oom_scenario(mon, (), lists=[("B", "fail_nonblock")])
    assert child.returncode == -9
    b_fail = fdelta(fx, "B", "nonblockable_fail")
    assert b_fail > 0
    nd = lambda result: delta("mnmon_notifier_invalidations_total", notifier=b_start, module="mnmon_fixture",
                              kind="list", mode=NB, result=result)
    assert nd("eagain") == b_fail
    assert nd("ok") == fdelta(fx, "B", "nonblockable_ok")
    assert delta("mnmon_invalidate_range_start_total", mode=NB, result="eagain") == b_fail
    assert delta("mnmon_oom_reap_attempts_total", result="notifier_blocked") == MAX_OOM_REAP_RETRIES
    assert delta("mnmon_oom_reap_blocked_total", notifier=b_start, module="mnmon_fixture") == MAX_OOM_REAP_RETRIES
    attempts = [e for e in events if e.type == "reap_attempt" and e.pid == child.pid]
    assert {mon.symbols.resolve(e.ip)[0] for e in attempts} == {b_start}


def test_lean_names_which_of_two_list_notifiers_failed_from_the_kernels_log(mon):
    # Both are called; lean probes no callbacks, but the kernel logs each list failure
    # (failure_log.bpf.c): B's failures are B's, A's calls succeeded, B blocked the reaper.
    a_start, b_start = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_fail_nonblock_start"
    assert mon.statuses["list_failure_log"].attached
    child, delta, fx, tp, lines, events = _oom_scenario(mon, (), lists=[("A", "never_fail"), ("B", "fail_nonblock")])
    assert child.returncode == -9
    b_fail = fdelta(fx, "B", "nonblockable_fail")
    assert b_fail > 0
    assert len([line for line in lines if "callback failed with -11 in non-blockable context" in line]) == b_fail
    nd = lambda sym, result: delta("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture",
                                   kind="list", mode=NB, result=result)
    for name, sym in (("A", a_start), ("B", b_start)):
        assert nd(sym, "eagain") == fdelta(fx, name, "nonblockable_fail"), name
        assert nd(sym, "ok") == fdelta(fx, name, "nonblockable_ok"), name
        assert nd(sym, "unobserved") == 0, sym
    assert delta("mnmon_oom_reap_blocked_total", notifier=b_start, module="mnmon_fixture") == MAX_OOM_REAP_RETRIES
    assert delta("mnmon_oom_reap_blocked_total", notifier=a_start, module="mnmon_fixture") == 0


def test_lean_cannot_tell_which_of_overlapping_intervals_failed_and_says_so(mon):
    """Lean walks only non-blockable and failed starts, so it learns which interval callbacks
    record the sequence number only from a non-blockable start that succeeded, and here none
    does: B fails each (the counts configuration learns from every start that succeeds:
    tests/kernel/test_counts.py). Of A and B over one range, B failing: the failure is
    nobody's (notifier="unknown"), and A, surely called first, is counted as called with its
    outcome unobserved. Ground truth: the fixture's counts."""
    ok, fail = "mnmon_fx_interval_never_fail", "mnmon_fx_interval_fail_nonblock"
    child, delta, fx, tp, lines, events = _oom_scenario(
        mon, (), overlap=[("A", "never_fail"), ("B", "fail_nonblock")], worked=True)
    assert child.returncode == -9
    b_fail = fdelta(fx, "B", "nonblockable_fail")
    assert b_fail > 0 and fdelta(fx, "A", "nonblockable_ok") == b_fail
    nd = lambda sym, result: delta("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture",
                                   kind="interval", mode=NB, result=result)
    assert nd(ok, "unobserved") == fdelta(fx, "A", "nonblockable_ok")
    assert nd(ok, "ok") == nd(fail, "eagain") == nd(fail, "unobserved") == 0
    assert delta("mnmon_invalidate_range_start_total", mode=NB, result="eagain") >= b_fail
    assert delta("mnmon_oom_reap_blocked_total", notifier="unknown", module="unknown") == REAP_CALLS
    assert delta("mnmon_oom_reap_blocked_total", notifier=fail, module="mnmon_fixture") == 0
