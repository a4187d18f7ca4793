"""Premature OOM victims against ground truth on the real kernel: the order of the kernel's
oom:mark_victim events, the reaper's own log line, and the time the fixture's notifier saw
release for the first victim's mm (its teardown). Timestamps: the trace instance runs on
CLOCK_MONOTONIC, the clock of BPF's and the fixture's ktime_get_ns()."""
import re
import time

import pytest

from bed import two_victims
from bed.evidence import TraceInstance
from bed.fixture_dev import read_stats
from tests.kernel import held_monitor
from tests.kernel.test_probes import drain, value, wait_attached

# The monitor held by the modules before may stay attached through this one (held_monitor.py).
HOLDS_MONITOR = True

A_START, B_START = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_fail_nonblock_start"
AB = [("A", "never_fail"), ("B", "fail_nonblock")]
HELD_PARK_MS = 20000        # the first mm outlives the second OOM by seconds, even emulated
SHORT_PARK_MS = 10000      # outlasts the growth to the first OOM and the reaper's ten tries
# Between exit_mmap's entry (mnmon) and the fixture's release inside it, and between a
# tracepoint's timestamp and BPF's clock read in the same program: microseconds natively,
# more on an emulated CPU.
SLACK_S = 0.25


@pytest.fixture(scope="module")
def mon():
    from monitor.cli.doctor import premature_line
    m = held_monitor.monitor()          # every probe, as test_probes.py's (held_monitor.py)
    line = premature_line(list(m.statuses.values()), m.coverage, True)
    assert line == "premature OOM victims: countable here", line
    return m


def _run(mon, lists, **kw):
    symbols = [s for name, _ in lists for s in {"A": (A_START,), "B": (B_START,)}[name]]
    base = {}

    def ready(info):
        wait_attached(mon, *symbols)
        base["snap"] = mon.snapshot()
        base["events"] = len(drain(mon))

    with TraceInstance("premature", ["oom/mark_victim"], clock="mono") as trace:
        pair = two_victims.run_pair(lists, on_ready=ready, **kw)
    time.sleep(0.5)
    after = mon.snapshot()
    events = [e for e in drain(mon)[base["events"]:] if e.type == "premature_victim"]
    marks = [(int(e["pid"]), e["_ts"]) for e in trace.events("oom/mark_victim")
             if int(e["pid"]) in (pair.first_pid, pair.second_pid)]
    slots = read_stats()
    release = max(slots[s].release_ns for s in pair.first_info["slots"].values()) / 1e9
    delta = lambda name, **l: value(after, name, **l) - value(base["snap"], name, **l)
    held = lambda: (after.get("mnmon_oom_given_up_mm_held_seconds"),
                    base["snap"].get("mnmon_oom_given_up_mm_held_seconds"))
    return pair, marks, release, delta, held, events


def _premature(delta):
    return delta("mnmon_oom_premature_victims_total", notifier=B_START, module="mnmon_fixture") + \
        delta("mnmon_oom_premature_victims_total", notifier=A_START, module="mnmon_fixture") + \
        delta("mnmon_oom_premature_victims_total", notifier="unknown", module="unknown")


def _held_delta(held):
    now, then = held()
    assert now is not None, "mnmon_oom_given_up_mm_held_seconds absent: not countable here (mnmon doctor)"
    return now.count - (then.count if then else 0), now.sum - (then.sum if then else 0)


def test_second_victim_while_the_given_up_mm_is_held_is_premature_and_names_b(mon):
    pair, marks, release, delta, held, events = _run(mon, AB, park_ms=HELD_PARK_MS)
    # Ground truth: the kernel chose the first, gave up its reap, chose the second in the
    # same cgroup, and the first mm's release came after that.
    assert [pid for pid, _ in marks] == [pair.first_pid, pair.second_pid]
    assert "unable to reap" in pair.reaper_line
    (_, t1), (_, t2) = marks
    assert t1 < t2 < release
    assert pair.first_cgroup == pair.second_cgroup
    # mnmon: one premature victim, named for B, the notifier that blocked the reap.
    assert delta("mnmon_oom_premature_victims_total", notifier=B_START, module="mnmon_fixture") == 1
    assert _premature(delta) == 1
    n, held_s = _held_delta(held)
    assert n == 1
    assert abs(held_s - (release - t1)) < SLACK_S, (held_s, release - t1)
    # The watch event links both victims.
    assert len(events) == 1
    d = mon.describe(events[0])
    assert (d["pid"], d["first_pid"]) == (pair.second_pid, pair.first_pid)
    assert (d["blocked_by"], d["blocked_by_module"]) == (B_START, "mnmon_fixture")
    assert abs(d["first_held_seconds"] - (t2 - t1)) < SLACK_S, (d["first_held_seconds"], t2 - t1)
    cg = "/" + pair.first_cgroup.split("/sys/fs/cgroup/", 1)[1]
    assert d["domain"].endswith(cg.rsplit("/", 1)[1]) and d["cgroup"].endswith(cg.rsplit("/", 1)[1])
    assert d["first_cgroup"] == d["cgroup"]
    print(f"premature: 1 == mark_victim order {[p for p, _ in marks]}; blocker {B_START}; "
          f"held {held_s:.3f} s, fixture release at {release - t1:.3f} s after the first mark; "
          f"first held {d['first_held_seconds']:.3f} s when the second was chosen, trace {t2 - t1:.3f} s")


def test_second_victim_after_the_teardown_is_not_premature(mon):
    pair, marks, release, delta, held, events = _run(mon, AB, park_ms=SHORT_PARK_MS, teardown_first=True)
    assert [pid for pid, _ in marks] == [pair.first_pid, pair.second_pid]
    assert "unable to reap" in pair.reaper_line
    (_, t1), (_, t2) = marks
    assert t1 < release < t2
    assert _premature(delta) == 0 and events == []
    n, held_s = _held_delta(held)       # given up, then torn down: held, but nobody chosen meanwhile
    assert n == 1 and abs(held_s - (release - t1)) < SLACK_S, (held_s, release - t1)
    print(f"after teardown: premature 0; held {held_s:.3f} s, fixture release at {release - t1:.3f} s")


def test_second_victim_in_another_cgroup_is_not_premature(mon):
    pair, marks, release, delta, held, events = _run(mon, AB, park_ms=HELD_PARK_MS, same_cgroup=False)
    assert [pid for pid, _ in marks] == [pair.first_pid, pair.second_pid]
    assert "unable to reap" in pair.reaper_line
    (_, t1), (_, t2) = marks
    assert t1 < t2 < release and pair.first_cgroup != pair.second_cgroup
    assert _premature(delta) == 0 and events == []
    print(f"another cgroup: premature 0 (second chosen {t2 - t1:.3f} s after the first, its mm held "
          f"until {release - t1:.3f} s)")


def test_a_reaped_victim_makes_no_premature_victim(mon):
    pair, marks, release, delta, held, events = _run(mon, [("A", "never_fail")], park_ms=HELD_PARK_MS)
    assert [pid for pid, _ in marks] == [pair.first_pid, pair.second_pid]
    assert re.search(rf"reaped process {pair.first_pid}\b", pair.reaper_line)
    (_, t1), (_, t2) = marks
    assert t1 < t2 < release            # its (reaped) mm still existed when the second was chosen
    assert _premature(delta) == 0 and events == []
    assert _held_delta(held)[0] == 0
    print(f"reaped: premature 0 (second chosen {t2 - t1:.3f} s after the first, mm torn down at "
          f"{release - t1:.3f} s)")
