"""The counts configuration on the real kernel: an fexit on the core start and an fentry on
its end count every call; with probes.latency: sampled (the default) the callbacks' timing
probes come and go in windows. Every count against ground truth: KVM's own trace of its
notifier's calls, the fixture's own counts, the oom:* tracepoints and the kernel's log.

The module's monitor runs sampled latency with windows toggled every second from a thread,
as the daemon's refresh would every minute: the counts must not notice them."""
import re
import threading
import time

import pytest

from bed import scenarios
from bed.evidence import kvm_invalidations
from bed.fixture_dev import read_stats
from monitor.plan.decisions import Off
from tests.kernel import kernel_facts
from tests.kernel.test_bed import MAX_OOM_REAP_RETRIES
from tests.kernel.test_probes import (B, EXIT_MMAP_CALLS, KVM_END, KVM_START, NB, REAP_CALLS, _oom_scenario,
                                      count_a_million, drain, fdelta, notifier, value)

pytestmark = pytest.mark.skipif(not kernel_facts.at_least(5, 6), reason="counts needs the subscription walk (5.6+)")

LATENCY_FAMILIES = ("mnmon_notifier_invalidation_duration_seconds", "mnmon_invalidate_range_start_duration_seconds")
HIST = "mnmon_notifier_invalidation_duration_seconds"


class Ticker:
    """Calls mon.refresh() every 0.3 s, as serve's loop does every discovery interval; the
    tests' own refresh() calls take the same lock (serve refreshes from one thread)."""

    def __init__(self, mon):
        self.mon, self.lock, self.stop = mon, threading.Lock(), threading.Event()
        refresh = mon.refresh

        def locked():
            with self.lock:
                return refresh()
        mon.refresh = locked
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.3):
            self.mon.refresh()

    def pause(self):
        """No ticks until resume(), the window closed, and no refresh() opens another."""
        self.stop.set()
        self.thread.join()
        self.period, self.mon.windows.period = self.mon.windows.period, float("inf")
        self.mon.windows.hold(False)
        self.mon.windows.close()

    def resume(self):
        self.mon.windows.hold(False)
        self.mon.windows.period = self.period
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()


@pytest.mark.skipif(kernel_facts.latencies() == ["sampled"], reason="the installed kernel's tier runs it (a leg "
                                                                    "runs the default configuration)")
def test_latency_always_times_every_call_and_counts_them_all():
    """probes.latency: always is the default's path in a window, held open from the start,
    and the core start timed by an entry beside the counts fexit. Ground truth: the
    fixture's own count of its callback's calls (one per start of its mm). Before the
    module's monitor starts: two in one process would share their kprobes' event names."""
    from monitor.attach.session import Monitor
    sym = "mnmon_fx_list_never_fail_start"
    m = Monitor.start(latency="always")
    try:
        assert m.statuses["invalidate_range_start"].method == "counts-fexit"
        assert m.coverage.counts and m.coverage.timed_always and m.windows.held
        assert m.statuses["invalidate_range_start"].attached
        got_timed, got_calls, fx, after, before = _churn_timed_and_counted(m, sym)
        assert fx >= 300 and got_calls == fx and got_timed == fx, (got_timed, got_calls, fx)
        assert after.get(HIST, notifier=sym, module="mnmon_fixture", mode=B).sum > 0
        m.refresh()         # a refresh does not close the window latency always holds
        assert m.windows.held and m.snapshot().get("mnmon_latency_sampled_ratio") > 0.99
        # every start of the churn timed, the fixture's among them: the histograms' counts rise
        # by the starts' count, of every mode and result
        starts = lambda snap: sum(v for _, v in snap.family("mnmon_invalidate_range_start_total"))
        start_hist = lambda snap, mode: snap.get("mnmon_invalidate_range_start_duration_seconds", mode=mode)
        timed_starts = lambda snap: sum(h.buckets[-1][1] for h in (start_hist(snap, x) for x in (B, NB)) if h)
        got_starts, got_timed_starts = starts(after) - starts(before), timed_starts(after) - timed_starts(before)
        assert got_starts >= fx and got_timed_starts == got_starts, (got_timed_starts, got_starts, fx)
        assert start_hist(after, B).sum > start_hist(before, B).sum
        print(f"latency always: timed {got_timed} == counted {got_calls} == fixture {fx}; "
              f"starts timed {got_timed_starts} == counted {got_starts} (fixture's mm {fx})")
    finally:
        m.close()


@pytest.fixture(scope="module")
def mon():
    from monitor.attach.session import Monitor
    m = Monitor.start(latency="sampled")
    m.windows.window, m.windows.period, m.windows.max_share = 1.0, 2.0, 1.0     # a window every other second
    m.received = []
    m.open_events(m.received.append)
    m.ticker = Ticker(m)
    yield m
    m.ticker.stop.set()
    m.ticker.thread.join()      # a refresh still running would detach links close() has closed
    m.close()


def test_counts_attaches_two_programs_on_the_path_and_times_callbacks_in_windows(mon):
    st = mon.statuses
    assert (st["invalidate_range_start"].method, st["invalidate_range_start"].attached) == ("counts-fexit", True)
    assert (st["invalidate_range_end"].method, st["invalidate_range_end"].attached) == ("fentry", True)
    assert (st["list_failure_log"].method, st["list_failure_log"].attached) == ("fentry", True)
    # sampled latency keeps the probes that find callbacks at registration
    for name in ("notifier_register", "interval_notifier_insert"):
        assert st[name].attached, st[name]
    assert st["notifier_release"].attached and st["oom_reap_task_mm"].attached
    cov = mon.coverage
    assert cov.counts and cov.sampled and cov.ends and cov.walked and cov.per_notifier and not cov.timed
    assert cov.callbacks is None
    snap = mon.snapshot()
    assert snap.get("mnmon_probe_attached", probe="invalidate_range_start", method="counts-fexit") == 1
    assert 0 < snap.get("mnmon_latency_sampled_ratio") <= 1
    # the core start is not timed: only callbacks are, in windows
    assert snap.get("mnmon_invalidate_range_start_duration_seconds", mode=B) is None


@pytest.mark.skipif(kernel_facts.latencies() == ["sampled"], reason="the installed kernel's tier runs it (a leg "
                                                                    "runs the default configuration)")
def test_latency_off_attaches_no_callback_probe_and_exports_no_latency():
    from monitor.attach.session import Monitor
    m = Monitor.start(latency="off")
    try:
        st = m.statuses
        assert st["invalidate_range_start"].method == "counts-fexit"
        for name in ("notifier_register", "interval_notifier_insert"):
            assert st[name].off is Off.COUNTS and not st[name].attached, st[name]
        assert m.coverage.counts and not m.coverage.sampled and m.windows is None
        assert m.refresh() == [] and m.callbacks == {}
        snap = m.snapshot()
        for family in LATENCY_FAMILIES + ("mnmon_latency_sampled_ratio",):
            assert snap.get(family) is None, f"{family} exported with latency off"
    finally:
        m.close()


def test_a_window_times_every_call_and_outside_one_none_is(mon):
    """Ground truth: the fixture's own count of its callback's calls. In a window held open the
    histogram's count grows by exactly that; with the window closed it does not move, while
    the walk counts every call both times."""
    sym = "mnmon_fx_list_never_fail_start"
    mon.ticker.pause()
    try:
        got = {}
        for held in (False, True):
            if held:
                mon.windows.hold()
            got[held] = _churn_timed_and_counted(mon, sym)[:3]
        (closed_timed, closed_calls, closed_fx), (open_timed, open_calls, open_fx) = got[False], got[True]
        assert closed_fx >= 300 and open_fx >= 300
        assert closed_calls == closed_fx and open_calls == open_fx
        assert closed_timed == 0, f"timed {closed_timed} calls with the window closed"
        assert open_timed == open_fx, f"timed {open_timed} calls in the window, fixture {open_fx}"
        share = mon.snapshot().get("mnmon_latency_sampled_ratio")
        assert 0 < share < 1
        print(f"sampled latency: window closed: timed 0, counted {closed_calls} == fixture {closed_fx}; "
              f"window open: timed {open_timed} == counted {open_calls} == fixture {open_fx}; share {share:.2f}")
    finally:
        mon.ticker.resume()


def test_a_million_invalidations_counted_exactly_by_default(mon):
    """The default configuration under load, its windows coming and going every second."""
    got, truth, seconds = count_a_million(mon, lambda sym: _known(mon, sym))
    print(f"default, load: {got} invalidations counted == fixture {truth}, {seconds:.0f} s, 0 lost")


def _churn_timed_and_counted(m, sym, iterations=300):
    """A churn of the fixture's list notifier (callback sym): (calls timed, calls counted,
    the fixture's own count of them, the snapshot after), the first two as m saw them."""
    hist = lambda snap: snap.get(HIST, notifier=sym, module="mnmon_fixture", mode=B)
    timed = lambda snap: hist(snap).buckets[-1][1] if hist(snap) else 0
    snaps = {}
    child = scenarios.run_churn(kind="list", behaviour="never_fail", iterations=iterations,
                                on_ready=lambda info: (_known(m, sym), snaps.setdefault("b", m.snapshot())),
                                at_done=lambda: (read_stats(), m.snapshot()))
    assert child.returncode == 0
    fixture, after = child.at_done
    before = snaps["b"]
    return (timed(after) - timed(before), notifier(after, sym, B, "ok") - notifier(before, sym, B, "ok"),
            fixture[child.info["slot"]].blockable_ok, after, before)


def _known(mon, sym, timeout=15):
    """Until discovery knows sym's callback (found at registration or in BTF), as wait_attached."""
    deadline = time.monotonic() + timeout
    while not mon.is_attached(sym):
        assert time.monotonic() < deadline, f"{sym} not found within {timeout} s"
        mon.refresh()
        time.sleep(0.2)


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


OVERLAPS = {
    # A, B, C over one range, called in that order: A succeeds, B fails non-blockable, C is
    # never called.
    "three": [("A", "never_fail"), ("B", "fail_nonblock"), ("C", "never_fail")],
    # A crowd: more before the failing one than the walk follows one by one (MAX_SUBS, 8),
    # and more after it.
    "crowd": [(f"A{i}", "never_fail") for i in range(10)] + [("B", "fail_nonblock")]
    + [(f"C{i}", "never_fail") for i in range(3)],
}


@pytest.mark.parametrize("layout", sorted(OVERLAPS))
def test_which_of_overlapping_intervals_blocked_the_reaper_is_named_by_sequence(mon, layout):
    """The walk alone cannot tell which of several overlapping intervals failed a
    non-blockable start: the kernel stops at it. Each callback that returned true recorded
    the start's sequence number in its subscription (mmu_interval_set_seq()), which the
    walk at the return reads; the fixture's callbacks did so in the blockable invalidation
    the driver made first (worked=True). Ground truth: the fixture's own counts, per
    notifier, of every mode and result."""
    ok, fail = "mnmon_fx_interval_never_fail", "mnmon_fx_interval_fail_nonblock"
    child, delta, fx, tp, lines, events = _oom_scenario(mon, (), overlap=OVERLAPS[layout], worked=True)
    assert child.returncode == -9
    names = {sym: [n for n, b in OVERLAPS[layout] if b == behaviour]
             for sym, behaviour in ((ok, "never_fail"), (fail, "fail_nonblock"))}
    fsum = lambda sym, field: sum(fdelta(fx, n, field) for n in names[sym])
    nd = lambda sym, mode, result: delta("mnmon_notifier_invalidations_total", notifier=sym,
                                         module="mnmon_fixture", kind="interval", mode=mode, result=result)
    b_fail = fdelta(fx, "B", "nonblockable_fail")
    assert b_fail == REAP_CALLS
    # the kernel's order: those after B were never called non-blockable
    assert sum(fdelta(fx, n, "nonblockable_ok") for n, _ in OVERLAPS[layout] if n.startswith("C")) == 0
    for sym in (ok, fail):
        assert nd(sym, NB, "eagain") == fsum(sym, "nonblockable_fail"), sym
        assert nd(sym, NB, "ok") == fsum(sym, "nonblockable_ok"), sym
        assert nd(sym, B, "ok") == fsum(sym, "blockable_ok"), sym
        assert nd(sym, NB, "unobserved") == nd(sym, B, "unobserved") == 0, sym
    assert delta("mnmon_notifier_invalidations_total", notifier="unattributed", module="unattributed",
                 kind="interval", mode=NB, result="ok") == 0
    assert delta("mnmon_oom_reap_blocked_total", notifier=fail, module="mnmon_fixture") == REAP_CALLS
    assert delta("mnmon_oom_reap_blocked_total", notifier="unknown", module="unknown") == 0
    assert delta("mnmon_oom_reaper_gave_up_total") == 1
    drain(mon)
    print(f"counts, {len(OVERLAPS[layout])} overlapping intervals OOM: {fail} eagain {nd(fail, NB, 'eagain')} == "
          f"fixture {b_fail}; {ok} nonblockable ok {nd(ok, NB, 'ok')} == fixture {fsum(ok, 'nonblockable_ok')}")
