"""process_mrelease(2): a notifier blocking it is counted for that caller, not the
reaper. Runs last in the tier (file name): it SIGKILLs a victim itself."""
import pytest

from bed import scenarios
from tests.kernel import kernel_facts
from bed.fixture_dev import read_stats
from tests.kernel.test_probes import NB, mon, notifier, value, wait_attached  # noqa: F401 (mon: fixture)

# The monitor held by the modules before may stay attached through this one (held_monitor.py).
HOLDS_MONITOR = True


@pytest.mark.skipif(not kernel_facts.at_least(5, 15), reason="process_mrelease(2) exists from 5.15")
def test_process_mrelease_is_told_from_the_reaper(mon):
    import errno
    b = "mnmon_fx_list_fail_nonblock_start"
    base = {}

    def ready(info):
        wait_attached(mon, b, "mnmon_fx_list_fail_nonblock_end")
        base["snap"], base["fx"] = mon.snapshot(), read_stats()

    child, err = scenarios.run_mrelease(lists=[("B", "fail_nonblock")], on_ready=ready)
    after, fx1 = mon.snapshot(), read_stats()
    before, fx0 = base["snap"], base["fx"]
    slot = child.info["slots"]["B"]
    # The kernel's answer: B made the release fail (process_mrelease returns -EAGAIN).
    assert err == errno.EAGAIN
    d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    assert d("mnmon_oom_reap_calls_total", caller="process_mrelease", result="notifier_blocked") == 1
    assert d("mnmon_oom_reap_calls_total", caller="oom_reaper", result="notifier_blocked") == 0
    assert d("mnmon_oom_reap_attempts_total", result="notifier_blocked") == 0, "not the reaper's attempt"
    assert d("mnmon_oom_reap_blocked_total", notifier=b, module="mnmon_fixture") == 1
    assert notifier(after, b, NB, "eagain") - notifier(before, b, NB, "eagain") == \
        fx1[slot].nonblockable_fail - fx0[slot].nonblockable_fail > 0
    print(f"process_mrelease: EAGAIN; B nonblockable eagain {notifier(after, b, NB, 'eagain') - notifier(before, b, NB, 'eagain')}"
          f" == fixture {fx1[slot].nonblockable_fail - fx0[slot].nonblockable_fail}, counted for process_mrelease 1")
