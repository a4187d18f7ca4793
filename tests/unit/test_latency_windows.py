"""Sampled latency (probes.latency: sampled): windows opened and closed as ticks come, the
share of time they were open, and the watcher attaching and detaching callbacks' probes."""
from monitor.attach import discovery
from monitor.attach.latency_windows import LatencyWindows, moved
from tests.unit.test_watch import FakeBPF, FakeModuleFentry, _watcher


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _windows(window=5.0, period=60.0):
    clock, calls = Clock(), []
    return LatencyWindows(calls.append, window, period, clock), clock, calls


def test_the_first_window_opens_at_the_first_tick_and_closes_after_its_length():
    w, clock, calls = _windows()
    w.tick()
    assert calls == [True]
    clock.t += 4.9
    w.tick()
    assert calls == [True]           # not yet its length
    clock.t += 0.1
    w.tick()
    assert calls == [True, False]
    clock.t += 30
    w.tick()
    assert calls == [True, False]    # the next one a period after the last opened
    clock.t += 25
    w.tick()
    assert calls == [True, False, True]


def test_a_window_with_nothing_to_time_is_skipped_and_counted_as_timed():
    # idle: each window would cost a trampoline rebuild per callback probe and time nothing
    starts = [0]
    clock, calls = Clock(), []
    w = LatencyWindows(calls.append, 5.0, 60.0, clock, busy=moved(lambda: starts[0]))
    for _ in range(30):                 # two and a half idle minutes of 5 s ticks
        w.tick()
        clock.t += 5
    assert calls == [True, False]       # the first at start, as before; then none
    assert abs(w.share() - 15 / 150) < 1e-9     # 100, 160, 220: one opened, two skipped
    starts[0] += 1                      # a notifier's mm invalidated (at 250)
    for _ in range(8):                  # 250 .. 285: the next due (280) opens, 285 closes
        w.tick()
        clock.t += 5
    assert calls == [True, False, True, False]


def test_moved_says_whether_the_count_changed_since_it_last_asked():
    n = [7]
    busy = moved(lambda: n[0])
    assert busy() and not busy()
    n[0] = 8
    assert busy() and not busy()


def test_a_window_lasts_until_the_first_tick_after_its_length():
    # serve ticks every discovery interval: with a 10 s interval a window lasts 10 s
    w, clock, calls = _windows()
    w.tick()
    clock.t += 10
    w.tick()
    assert calls == [True, False] and w.share() == 1.0
    clock.t += 30
    assert w.share() == 0.25


def test_a_longer_interval_makes_longer_windows_and_longer_waits_not_a_bigger_share():
    w, clock, calls = _windows(window=5, period=60)
    opened = []
    for _ in range(6 * 30):          # half an hour of 10 s ticks
        before = len(calls)
        w.tick()
        if calls[before:] == [True]:
            opened.append(clock.t)
        clock.t += 10
    # a window lasts 10 s (a tick), and the next opens when 10 s are a twelfth of the time again
    assert [b - a for a, b in zip(opened, opened[1:])][:3] == [120, 120, 120]
    assert w.share() <= 5 / 60 + 1e-9


def test_share_is_the_fraction_of_time_open_since_start():
    w, clock, _ = _windows(window=5, period=60)
    for _ in range(12 * 10):         # ten minutes of 5 s ticks
        w.tick()
        clock.t += 5
    assert abs(w.share() - 5 / 60) < 0.01


def test_hold_keeps_timing_on_until_released():
    w, clock, calls = _windows()
    w.hold()
    assert calls == [True]
    for _ in range(20):
        clock.t += 5
        w.tick()
    assert calls == [True] and w.share() == 1.0
    w.hold(False)
    w.tick()
    assert calls == [True, False]
    w.close()
    assert calls == [True, False]    # closed already: nothing more to detach


def _sampled(bpf, mf):
    w = _watcher(bpf, mf)
    w.timing = False        # as CallbackWatcher(sampled=True) starts
    return w


def test_sampled_callbacks_are_attached_once_to_learn_how_then_only_in_windows():
    bpf = FakeBPF()
    mf = FakeModuleFentry({"kvm": {"kvm_mmu_notifier_invalidate_range_start": 2}})
    w = _sampled(bpf, mf)
    kvm = w.attach_callback(discovery.Callback("kvm_mmu_notifier_invalidate_range_start", "kvm", discovery.LIST))
    fix = w.attach_callback(discovery.Callback("fixture_interval_invalidate", "mnmon_fixture", discovery.INTERVAL))
    # the status says how it attaches; the probes came off at once, outside a window
    assert (kvm.method, kvm.attached, fix.method, fix.attached) == ("fentry", True, "kprobe", True)
    assert mf.detached == [101, 102] and ("detach_kprobe", "fixture_interval_invalidate") in bpf.calls
    assert not any(p.live for p in w.callbacks.values())
    w.set_timing(True)
    assert all(p.live for p in w.callbacks.values())
    # fentry: the programs loaded at discovery attached again, not loaded again
    assert w.callbacks[("kvm_mmu_notifier_invalidate_range_start", "kvm")].links == (103, 104)
    assert mf.resumed == [(("prog", 101), 103), (("prog", 102), 104)] and len(mf.attached) == 2
    assert bpf.calls.count(("kprobe", "fixture_interval_invalidate", "cb_interval_entry")) == 2
    w.set_timing(False)
    assert mf.detached == [101, 102, 103, 104] and not any(p.live for p in w.callbacks.values())
    # a kernel that attaches a tracing program once (5.10): loaded afresh
    mf.refuse_resume = True
    w.set_timing(True)
    kvm_p = w.callbacks[("kvm_mmu_notifier_invalidate_range_start", "kvm")]
    assert kvm_p.live and kvm_p.links == (105, 106) and len(mf.attached) == 4
    assert mf.unloaded == [("prog", 103), ("prog", 104)]
    w.set_timing(False)
    mf.refuse_resume = False
    # a callback found in a window stays attached until it closes
    w.set_timing(True)
    odd_bpf = len(bpf.calls)
    w.attach_callback(discovery.Callback("odd_interval_invalidate", "odd", discovery.INTERVAL))
    assert w.callbacks[("odd_interval_invalidate", "odd", )].live and len(bpf.calls) > odd_bpf
    assert not any(c[0] == "detach_kprobe" and c[1] == "odd_interval_invalidate" for c in bpf.calls)


def test_unloading_a_module_between_windows_unloads_its_suspended_programs():
    mf = FakeModuleFentry({"kvm": {"kvm_mmu_notifier_invalidate_range_start": 2}})
    w = _sampled(FakeBPF(), mf)
    w.attach_callback(discovery.Callback("kvm_mmu_notifier_invalidate_range_start", "kvm", discovery.LIST))
    w._drop_module("kvm")
    assert mf.unloaded == [("prog", 101), ("prog", 102)] and w.callbacks == {}


def test_unloading_a_module_outside_a_window_detaches_nothing_twice():
    bpf = FakeBPF()
    w = _sampled(bpf, FakeModuleFentry({}))
    w.attach_callback(discovery.Callback("fixture_interval_invalidate", "mnmon_fixture", discovery.INTERVAL))
    detaches = [c for c in bpf.calls if c[0].startswith("detach")]
    w._drop_module("mnmon_fixture")
    assert [c for c in bpf.calls if c[0].startswith("detach")] == detaches
