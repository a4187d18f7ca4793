"""The bed itself: the fixture and the scenarios do what they claim, by the kernel's own evidence."""
import errno
import re

import pytest

from bed import scenarios
from tests.kernel import kernel_facts
from bed.evidence import KernelLog, TraceInstance, kvm_invalidations
from bed.fixture_dev import Fixture, read_stats

OOM_EVENTS = ["oom/mark_victim", "oom/wake_reaper", "oom/start_task_reaping",
              "oom/finish_task_reaping", "oom/skip_task_reaping"]
MAX_OOM_REAP_RETRIES = 10           # mm/oom_kill.c


def test_fixture_rejects_bad_requests(fixture_module):
    fx = Fixture()
    try:
        with pytest.raises(OSError) as e:
            fx._subscribe(fixture_module.ADD_LIST, 7, 0, 0, 0)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fx.add_interval("never_fail", 0x10000, 0)
        assert e.value.errno == errno.EINVAL
    finally:
        fx.close()


def test_interval_churn_counts_each_invalidation_exactly(fixture_module):
    # Only madvise() on the notifier's own range reaches an interval notifier: exact ground truth.
    child = scenarios.run_churn(kind="interval", behaviour="never_fail", iterations=300)
    s = child.at_done[child.info["slot"]]
    assert (s.kind, s.pid, s.start_fn) == ("interval", child.pid, "mnmon_fx_interval_never_fail")
    assert s.blockable_ok == 300
    assert s.blockable_fail == s.nonblockable_ok == s.nonblockable_fail == 0


def test_list_churn_pairs_start_and_end(fixture_module):
    child = scenarios.run_churn(kind="list", behaviour="never_fail", iterations=300)
    s = child.at_done[child.info["slot"]]
    assert s.start_fn == "mnmon_fx_list_never_fail_start"
    # A list notifier sees the whole mm (the interpreter unmaps too): at least our 300.
    assert s.blockable_ok >= 300
    assert s.blockable_ends == s.blockable_ok
    assert s.nonblockable_ok == s.nonblockable_fail == 0


def test_sleeping_notifier_sleeps_what_it_was_told(fixture_module):
    child = scenarios.run_churn(kind="interval", behaviour="sleep", sleep_us=1500, iterations=40)
    s = child.at_done[child.info["slot"]]
    assert s.blockable_ok == 40
    # 1.5 ms lies in log2 slot 20: [2^20, 2^21) ns = [1.05, 2.10) ms. usleep_range() never wakes
    # early, so no call may land below it; how late it wakes is the emulated host's noise, so the
    # tail above is not bounded beyond slot 20 being where most calls land.
    assert sum(s.hist_log2_ns[:20]) == 0
    assert s.hist_log2_ns.index(max(s.hist_log2_ns)) == 20


def test_kvm_notifier_fires_for_guest_memory_churn():
    if not scenarios.Path("/dev/kvm").exists():
        pytest.fail("/dev/kvm missing: kvm_amd did not load in the guest")
    with kvm_invalidations() as hits:
        child = scenarios.run_kvm(iterations=200, pages=16)
    assert child.returncode == 0
    # KVM's list notifier traces every range it is told to unmap: ours, plus the interpreter's own.
    assert hits.hits >= 200


def _oom(lists=(), interval=None):
    log = KernelLog()
    with TraceInstance("oom", OOM_EVENTS) as trace:
        child = scenarios.run_oom(lists=lists, interval=interval)
    lines = log.lines()
    log.close()
    per_pid = {ev: [e for e in trace.events(ev) if int(e.get("pid", -1)) == child.pid] for ev in OOM_EVENTS}
    return child, read_stats(), lines, per_pid


def test_ab_oom_reaper_retries_and_gives_up(fixture_module):
    child, stats, lines, ev = _oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")])
    a, b = stats[child.info["slots"]["A"]], stats[child.info["slots"]["B"]]
    assert child.returncode == -9, "the victim should die by the OOM killer's SIGKILL"

    assert len(ev["oom/mark_victim"]) == 1
    assert len(ev["oom/start_task_reaping"]) == MAX_OOM_REAP_RETRIES
    assert len(ev["oom/finish_task_reaping"]) == MAX_OOM_REAP_RETRIES
    assert ev["oom/skip_task_reaping"] == []
    unable = [l for l in lines if re.search(rf"oom_reaper: unable to reap pid:{child.pid}\b", l)]
    assert len(unable) == 1

    # B fails every non-blockable start; the kernel logs each failure once.
    failed = [l for l in lines if "mnmon_fx_list_fail_nonblock_start" in l
              and "callback failed with -11 in non-blockable context" in l]
    assert b.nonblockable_fail > 0 and b.nonblockable_ok == 0
    assert len(failed) == b.nonblockable_fail
    # The same VMAs fail on each of the reaper's attempts (up to 6.0 exit_mmap reaps too,
    # but after mmu_notifier_release has unhooked list notifiers: B is not called there).
    assert b.nonblockable_fail % MAX_OOM_REAP_RETRIES == 0, "same VMAs fail on every attempt"
    # A is called first (head of the hlist) and never fails; nothing logged for it.
    assert a.nonblockable_fail == 0 and a.nonblockable_ok == b.nonblockable_fail
    assert not [l for l in lines if "mnmon_fx_list_never_fail_start" in l]
    # Since c2655835fd8c (5.12) a failing non-blockable start calls every end itself.
    if kernel_facts.ends_paired_on_failure():
        assert a.nonblockable_ends == a.nonblockable_ok
    else:
        assert a.nonblockable_ends == 0


def test_interval_oom_fails_silently(fixture_module):
    child, stats, lines, ev = _oom(interval="fail_nonblock")
    s = stats[child.info["slots"]["interval"]]
    assert child.returncode == -9
    assert len(ev["oom/start_task_reaping"]) == MAX_OOM_REAP_RETRIES
    # One VMA holds the interval: one failure per call (up to 6.0 exit_mmap's too).
    assert s.nonblockable_fail == kernel_facts.oom_reap_calls_per_victim(retries=MAX_OOM_REAP_RETRIES)
    assert s.nonblockable_ok == 0
    assert len([l for l in lines if re.search(rf"unable to reap pid:{child.pid}\b", l)]) == 1
    # Interval notifiers fail without a word in the log: the gap mnmon closes.
    assert not [l for l in lines if "callback failed" in l]
