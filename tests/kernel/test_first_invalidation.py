"""Every notifier counted from its first invalidation, against the fixture's own counts.

The world as users meet it: mnmon is ready first; then a driver module (built without
BTF, as DKMS drivers on Debian are) is loaded, and a process registers notifiers and
works at once. Nobody waits for mnmon's callback probes: while they attach (the daemon
looks every few seconds; here a thread looks every 0.2 s, so the hand-over from the
core probes to the callback probes happens in the middle of the work), the core probes
count the calls from the mm's subscriptions (bpf/attribute.bpf.c).
"""
import re
import threading
import time
from dataclasses import dataclass

import pytest

from monitor.plan.attach_plan import TASK_STORAGE
from bed import late_driver, scenarios
from tests.kernel import kernel_facts
from bed.evidence import KernelLog, TraceInstance, kvm_invalidations
from bed.fixture_dev import read_stats
from tests.kernel.test_bed import MAX_OOM_REAP_RETRIES, OOM_EVENTS
from tests.kernel.test_probes import drain

NB, B = "nonblockable", "blockable"
LIST_START, LIST_END = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_never_fail_end"
INTERVAL = "mnmon_fx_interval_never_fail"
FX = "mnmon_fixture"


@pytest.fixture(scope="module", params=kernel_facts.stores())
def mon(request):
    from monitor.attach.session import Monitor
    if request.param == TASK_STORAGE and not kernel_facts.at_least(5, 12):
        pytest.skip("task storage for tracing programs needs 5.12+ (4cf1bc1f1045); this kernel has the hash")
    # The driver as these tests meet it: built without BTF. (Where it has BTF, fentry on its
    # callbacks would hold it loaded: probes.callbacks auto; the tests unload and reload it.)
    late_driver.reload_fixture()
    m = Monitor.start(inflight=request.param)
    if not m.coverage.walked:
        pytest.skip(f"this kernel counts a notifier from its probes' attach only: {m.plan.walk_off.reason}")
    m.received = []
    m.open_events(m.received.append)
    yield m
    m.close()
    late_driver.reload_fixture(btf=True)       # the fixture as built, for the tests after these


class Refresher:
    """What the daemon does between scrapes: look for new callbacks and attach them."""

    def __init__(self, mon, every=0.2):
        self.mon, self.every, self.stop = mon, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def _run(self):
        try:
            while not self.stop.wait(self.every):
                self.mon.refresh()
        except Exception as e:      # noqa: BLE001 -- the test raises it, not the thread
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        if self.error:
            raise self.error


def calls(snap, symbol, mode, result, kind="list"):
    return snap.get("mnmon_notifier_invalidations_total", notifier=symbol, module=FX, kind=kind,
                    mode=mode, result=result) or 0


def ends(snap, symbol):
    return snap.get("mnmon_notifier_invalidate_range_end_total", notifier=symbol, module=FX) or 0


def timed(snap, symbol, mode):
    h = snap.get("mnmon_notifier_invalidation_duration_seconds", notifier=symbol, module=FX, mode=mode)
    return h.count if h else 0


def fixture_addresses():
    """{symbol: address} of the fixture's functions as loaded now (/proc/kallsyms)."""
    out = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            if line.endswith(f"[{FX}]\n"):
                addr, _, name = line.split()[:3]
                out[name] = int(addr, 16)
    return out


@dataclass
class Load:
    """One load of the fixture: when, and where its functions are."""
    at: float
    addresses: dict


def load_fixture(btf=False):
    late_driver.reload_fixture(btf=btf)
    return Load(time.time(), fixture_addresses())


def attached(mon, symbol, load):
    """Whether this load's callback is probed. Until mnmon's next refresh sees the reload, the
    previous load's probe stays listed as attached; and a reload often lands at the same
    address: only a probe attached since this load, at its address, is this load's."""
    p = mon.callbacks.get((symbol, FX))
    return bool(p and p.status.attached and p.since >= load.at and p.addr == load.addresses.get(symbol))


def wait_attached(mon, load, *symbols, timeout=60):
    """Until a Refresher has attached this load's callback probes of every symbol, as the daemon would."""
    deadline = time.monotonic() + timeout
    while not all(attached(mon, s, load) for s in symbols):
        assert time.monotonic() < deadline, f"callback probes not attached within {timeout} s: {symbols}"
        time.sleep(0.1)


@dataclass
class Run:
    """One late driver's run: its load, this run's counts (deltas) and the fixture's own."""
    load: Load
    listed: int         # the fixture's list notifier calls while the process worked (ground truth)
    counted: int        # mnmon's count of them in this run
    exited: int         # the fixture's list notifier calls once the process exited
    timed: int          # of which timed by the callback's own probes
    found: dict         # symbol -> how mnmon found its callback


def _late_driver_counts_equal_the_fixture(mon, iterations, handover=False, btf=False):
    load = load_fixture(btf=btf)
    assert late_driver.has_btf() == btf, f"the fixture was meant to be loaded {'with' if btf else 'without'} BTF"
    assert LIST_START in load.addresses and INTERVAL in load.addresses, load.addresses
    before = mon.snapshot()

    def attached_meanwhile():
        # The work pauses half-way only so that both sides of the hand-over surely happen
        # within it (it started at once: the first half ran before any callback probe).
        wait_attached(mon, load, LIST_START, INTERVAL)
    with Refresher(mon):
        info, (fixture, during) = late_driver.run_register_and_churn(
            iterations, at_done=lambda: (read_stats(), mon.snapshot()),
            pause_at=iterations // 2 if handover else -1, at_pause=attached_meanwhile)
    lst, itv = fixture[info["slots"]["list"]], fixture[info["slots"]["interval"]]
    d = lambda snap, f, *a, **k: f(snap, *a, **k) - f(before, *a, **k)
    # The interval notifier covers the churned range only; the list notifier sees every
    # invalidation of the process, the interpreter's own munmaps too, so the fixture's count
    # (not the iterations) is its ground truth.
    assert itv.blockable_ok == iterations and lst.blockable_ok >= iterations, (lst, itv)
    assert d(during, calls, LIST_START, B, "ok") == lst.blockable_ok
    assert d(during, ends, LIST_END) == lst.blockable_ends + lst.nonblockable_ends
    assert d(during, calls, INTERVAL, B, "ok", kind="interval") == itv.blockable_ok
    for sym, kind in ((LIST_START, "list"), (INTERVAL, "interval")):
        for mode in (B, NB):
            for result in ("eagain", "error", "unobserved"):
                assert d(during, calls, sym, mode, result, kind=kind) == 0, (sym, mode, result)
    # Once the process exited, its teardown called the interval notifier again: munmap,
    # mm teardown (__mmu_notifier_release, outside any invalidation) and exit_mmap's unmap.
    after, fixture = mon.snapshot(), read_stats()
    itv = fixture[info["slots"]["interval"]]
    assert itv.blockable_ok > iterations
    got = {(m, r): d(after, calls, INTERVAL, m, r, kind="interval") for m in (B, NB)
           for r in ("ok", "eagain", "error", "unobserved")}
    lost = d(after, lambda snap: snap.get("mnmon_events_lost_total") or 0)
    assert got[(B, "ok")] == itv.blockable_ok, (got, itv, f"lost {lost}")
    # The list notifier saw the interpreter's own munmaps up to its exit too.
    exited = fixture[info["slots"]["list"]].blockable_ok
    assert d(after, calls, LIST_START, B, "ok") == exited, (exited, f"lost {lost}")
    found = {s: mon.callbacks[(s, FX)].callback.found for s in (LIST_START, INTERVAL) if (s, FX) in mon.callbacks}
    return Run(load, lst.blockable_ok, d(during, calls, LIST_START, B, "ok"), exited,
               d(during, timed, LIST_START, B), found)


def test_a_driver_loaded_after_mnmon_is_counted_from_its_first_call(mon):
    n = 3000
    run = _late_driver_counts_equal_the_fixture(mon, n, handover=True)
    # Both sides counted: the core probes before the hand-over, the callback probes after
    # (only their calls have a time). The hand-over neither lost nor doubled a call.
    assert attached(mon, LIST_START, run.load) and attached(mon, INTERVAL, run.load)
    assert run.counted == run.listed
    assert 0 < run.timed < run.listed, (run.timed, run.listed)
    assert run.found[LIST_START] in ("registration", "invalidation") and \
        run.found[INTERVAL] in ("registration", "invalidation"), run.found
    print(f"late driver: list {run.counted} == fixture {run.listed}, interval {n} == fixture {n}; "
          f"{run.timed} of this run's {run.listed} list calls timed by its own probes")


def test_unloaded_and_reloaded_driver_counts_continue(mon):
    start = mon.snapshot()
    first = _late_driver_counts_equal_the_fixture(mon, 500)
    # A second load: a new module (often at the same address); the first load's counts stay
    # its notifier's, and this load's are counted on top from its first call.
    second = _late_driver_counts_equal_the_fixture(mon, 700)
    end = mon.snapshot()
    assert first.counted == first.listed and second.counted == second.listed
    both = calls(end, LIST_START, B, "ok") - calls(start, LIST_START, B, "ok")
    assert both == first.exited + second.exited
    assert calls(end, "unknown", B, "ok", kind="list") == 0
    print(f"reloaded driver: list {first.counted} == fixture {first.listed}, then {second.counted} == "
          f"fixture {second.listed}; both loads to their exits {both} == fixture {first.exited} + {second.exited}")


def test_ab_oom_of_a_late_driver_counts_equal_the_fixture(mon):
    """The issue's story: the driver loads after mnmon, a process churns through its list and
    interval notifiers at once, then the A/B OOM follows with no refresh at all: B's ops were
    never seen before, so every call of B's, and the reaper's blocker, come from the core
    probes (one unprobed notifier in a failed start: its failure)."""
    a, b = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_fail_nonblock_start"
    a_end, b_end = "mnmon_fx_list_never_fail_end", "mnmon_fx_list_fail_nonblock_end"
    load = load_fixture()
    with Refresher(mon):
        late_driver.run_register_and_churn(300)
        # A has worked for a while when the OOM comes: the daemon has attached its probes
        # (the churn alone may end first under emulation). Were A unprobed too, the failed
        # starts would have two unseen candidates: unobserved, as tests/kernel/test_lean.py shows.
        wait_attached(mon, load, a)
    assert not attached(mon, b, load)
    base = {}
    log = KernelLog()
    with TraceInstance("oom", OOM_EVENTS) as trace:
        child = scenarios.run_oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")],
                                  on_ready=lambda info: base.update(fixture=read_stats(), snap=mon.snapshot()))
    lines = log.lines()
    log.close()
    time.sleep(0.5)
    after, fixture = mon.snapshot(), read_stats()
    assert child.returncode == -9
    delta = lambda name, **l: (after.get(name, **l) or 0) - (base["snap"].get(name, **l) or 0)
    fx = {name: fixture[slot] for name, slot in child.info["slots"].items()}
    for name, sym, end in (("A", a, a_end), ("B", b, b_end)):
        nd = lambda mode, result: delta("mnmon_notifier_invalidations_total", notifier=sym, module=FX,
                                        kind="list", mode=mode, result=result)
        assert nd(NB, "eagain") == fx[name].nonblockable_fail, name
        assert nd(NB, "ok") == fx[name].nonblockable_ok, name
        assert nd(B, "ok") == fx[name].blockable_ok, name
        assert nd(NB, "unobserved") == nd(B, "unobserved") == 0, name
        assert delta("mnmon_notifier_invalidate_range_end_total", notifier=end, module=FX) == \
            fx[name].blockable_ends + fx[name].nonblockable_ends, name
    b_fail = fx["B"].nonblockable_fail
    assert b_fail > 0
    assert len([l for l in lines if "callback failed with -11 in non-blockable context" in l]) == b_fail
    tp = [e for e in trace.events("oom/start_task_reaping") if int(e.get("pid", -1)) == child.pid]
    assert delta("mnmon_oom_reap_attempts_total", result="notifier_blocked") == len(tp) == MAX_OOM_REAP_RETRIES
    assert delta("mnmon_oom_reap_blocked_total", notifier=b, module=FX) == MAX_OOM_REAP_RETRIES
    assert delta("mnmon_oom_reap_blocked_total", notifier="unknown", module="unknown") == 0
    unable = [l for l in lines if re.search(rf"oom_reaper: unable to reap pid:{child.pid}\b", l)]
    assert delta("mnmon_oom_reaper_gave_up_total") == len(unable) == 1
    # The victim's cgroup (the scenario's own memory cgroup, removed by now): on the victim
    # metric and on its events.
    by_cgroup = {lbl["cgroup"]: n - (base["snap"].get("mnmon_oom_tracked_victims_total", **lbl) or 0)
                 for lbl, n in after.family("mnmon_oom_tracked_victims_total")}
    victim_cgroups = [cg for cg, n in by_cgroup.items() if n]
    assert len(victim_cgroups) == 1 and by_cgroup[victim_cgroups[0]] == 1, by_cgroup
    assert re.fullmatch(r"(/|\.\.\./)mnmon-victim-\d+-\d+", victim_cgroups[0]), victim_cgroups
    drain(mon)
    described = [mon.describe(e) for e in mon.received if e.pid == child.pid and e.type in ("oom_victim", "reap_attempt")]
    assert described and all(d.get("cgroup") == victim_cgroups[0] for d in described), described
    print(f"late A/B: B eagain {b_fail} == fixture, A ok {fx['A'].nonblockable_ok} == fixture, "
          f"blocked {MAX_OOM_REAP_RETRIES}, B attached: {attached(mon, b, load)}")


def test_kvm_guest_started_after_mnmon_counted_from_its_first_invalidation(mon):
    sym = "kvm_mmu_notifier_invalidate_range_start"
    before = mon.snapshot()
    with kvm_invalidations() as hits:
        child = scenarios.run_kvm(iterations=200, pages=16)
    after = mon.snapshot()
    assert child.returncode == 0
    got = (after.get("mnmon_notifier_invalidations_total", notifier=sym, module="kvm", kind="list", mode=B,
                     result="ok") or 0) - \
          (before.get("mnmon_notifier_invalidations_total", notifier=sym, module="kvm", kind="list", mode=B,
                      result="ok") or 0)
    assert hits.hits >= 200
    assert got == hits.hits, f"mnmon {got} != {hits.label} {hits.hits}"


def test_a_late_driver_with_btf_is_counted_from_its_first_call(mon):
    """The same driver built with BTF (5.11+ kbuild with pahole): its callbacks are also
    found in its BTF when the module appears, whichever finding comes first. Last in this
    file: fentry on its callbacks (probes.callbacks: auto) holds the module loaded until
    the monitor closes, and the tests above unload it."""
    if not late_driver.has_btf_section(late_driver.FIXTURE_KO):
        pytest.skip("the fixture was built without BTF for this kernel (no module BTF before 5.11, or no pahole)")
    n = 3000
    run = _late_driver_counts_equal_the_fixture(mon, n, handover=True, btf=True)
    assert attached(mon, LIST_START, run.load) and attached(mon, INTERVAL, run.load)
    assert mon.callbacks[(LIST_START, FX)].status.method == "fentry", mon.callbacks[(LIST_START, FX)].status
    assert run.counted == run.listed
    # The half after the pause ran with this load's probes attached: timed, this run's only.
    assert 0 < run.timed <= run.listed, (run.timed, run.listed)
    print(f"late driver with BTF: list {run.counted} == fixture {run.listed}, interval {n} == fixture {n}; "
          f"found by {run.found[LIST_START]}/{run.found[INTERVAL]}, {run.timed} of this run's {run.listed} "
          f"list calls timed by fentry")
