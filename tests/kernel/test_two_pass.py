"""7.1's two-pass interval notifiers (invalidate_start, then invalidate_finish for each
start that handed back a finish): the attach plan claims them, the fixture proves it."""
import pytest

from bed import scenarios
from tests.kernel import kernel_facts
from bed.fixture_dev import read_stats
from tests.kernel.test_probes import B, _oom_scenario, fdelta, mon, notifier, wait_attached  # noqa: F401

# The monitor held by the modules before may stay attached through this one (held_monitor.py).
HOLDS_MONITOR = True

pytestmark = pytest.mark.skipif(not kernel_facts.at_least(7, 1),
                                reason="two-pass interval notifiers exist from 7.1")
NB = "nonblockable"


def test_two_pass_churn_counts_equal_the_fixture(mon):
    sym, n = "mnmon_fx_two_pass_never_fail_start", 200
    snaps = {}
    child = scenarios.run_churn(kind="two_pass", behaviour="never_fail", iterations=n,
                                on_ready=lambda info: (wait_attached(mon, sym), snaps.setdefault("b", mon.snapshot())),
                                at_done=lambda: (read_stats(), mon.snapshot()))
    fixture, after = child.at_done
    s = fixture[child.info["slot"]]
    assert s.kind == "two_pass" and s.blockable_ok >= n
    # The kernel ran a finish pass for every start that handed one back.
    assert s.blockable_ends + s.finish_skipped == s.blockable_ok
    got = notifier(after, sym, B, "ok", kind="interval") - notifier(snaps["b"], sym, B, "ok", kind="interval")
    assert got == s.blockable_ok, f"mnmon {got} != fixture {s.blockable_ok}"
    print(f"two-pass: {got} starts counted, fixture {s.blockable_ok}, finishes {s.blockable_ends}")


def test_two_pass_oom_failures_counted(mon):
    sym = "mnmon_fx_two_pass_fail_nonblock_start"
    child, delta, fx, tp, lines, events = _oom_scenario(mon, (sym,), two_pass="fail_nonblock")
    assert child.returncode == -9
    got = delta("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture", kind="interval",
                mode=NB, result="eagain")
    assert got == fdelta(fx, "two_pass", "nonblockable_fail") == kernel_facts.oom_reap_calls_per_victim()
    # A failed start hands back no finish: none ran for the non-blockable calls.
    assert fdelta(fx, "two_pass", "nonblockable_ends") == 0
    assert delta("mnmon_oom_reap_blocked_total", notifier=sym, module="mnmon_fixture") == got
    print(f"two-pass OOM: nonblockable eagain {got} == fixture {fdelta(fx, 'two_pass', 'nonblockable_fail')}, "
          f"finishes after failed starts 0 == fixture {fdelta(fx, 'two_pass', 'nonblockable_ends')}")
