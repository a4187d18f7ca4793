"""doctor's verdict: pure, from statuses and the coverage they give."""
from pathlib import Path

from monitor.plan import coverage
from monitor.cli import doctor
from monitor.plan.decisions import Block, Off
from monitor.attach.session import ProbeStatus

NO_KPROBES = Block(Off.KERNEL, "no kprobes")


def st(probe, attached, disabled=False):
    return ProbeStatus(probe, "kprobe" if attached else "", attached,
                       "" if attached else "disabled by configuration" if disabled else "why",
                       Off.CONFIG if disabled else None if attached else Off.KERNEL)


def cov(statuses, callbacks=None, callback_fentry=None, walk=None):
    return coverage.measure(statuses, callbacks=callbacks, callback_fentry=callback_fentry, walk=walk)


def verdict(statuses, attempted, callbacks=None):
    return doctor.verdict(statuses, cov(statuses, callbacks), attempted)


def test_verdict():
    core = [st("invalidate_range_start", True), st("invalidate_range_end", True)]
    assert verdict(core, True) == (True, "per-notifier outcomes: countable here")
    assert verdict(core, False)[0] is False              # only a real attach counts
    assert verdict(core, True, NO_KPROBES)[0] is False
    tp_only = [st("invalidate_range_start", False), st("oom:mark_victim", True)]
    assert verdict(tp_only, True) == \
        (False, "per-notifier outcomes: NOT countable here; OOM tracepoint counters only")
    # an end left off by configuration does not count against it
    assert verdict(core[:1] + [st("invalidate_range_end", False, disabled=True)], True)[0] is True


def test_disabled_is_a_value_not_a_reason():
    statuses = [st("oom:mark_victim", False, disabled=True), st("oom_reap_task_mm", False)]
    lines = doctor.probe_lines(statuses, cov(statuses), True)
    assert any(l.startswith("oom:mark_victim") and l.endswith("off: disabled by configuration") for l in lines)
    assert any(l.startswith("oom_reap_task_mm") and l.endswith("unavailable: why") for l in lines)


def test_each_callback_says_its_method_and_why_a_fallback():
    statuses = [ProbeStatus("notifier:kvm_mmu_notifier_invalidate_range_start", "fentry", True),
                ProbeStatus("notifier:fixture_interval_invalidate", "kprobe", True,
                            "fentry: mnmon_fixture:fixture_interval_invalidate: no BTF")]
    lines = doctor.probe_lines(statuses, cov(statuses), True)
    kvm = next(l for l in lines if l.startswith("notifier:kvm_"))
    fix = next(l for l in lines if l.startswith("notifier:fixture_"))
    assert kvm.split()[1:] == ["fentry", "attached"]
    assert fix.split()[1:3] == ["kprobe", "attached"] and fix.endswith("(fentry: mnmon_fixture:"
                                                                         "fixture_interval_invalidate: no BTF)")
    assert any(l.startswith("notifier callbacks: attachable (fentry where the module has BTF, which holds the "
                            "module loaded while attached; else kprobe)") for l in lines)
    pinned = doctor.probe_lines(statuses, cov(statuses, callback_fentry=Block(
        Off.CONFIG, "kprobe chosen by configuration (probes.callbacks)")), True)
    assert any("attachable (kprobe; not fentry: kprobe chosen by configuration (probes.callbacks))" in l
               for l in pinned)


def test_lean_says_what_it_keeps_and_leaves_off_and_still_counts_outcomes():
    from monitor.attach.probe import attach_spec
    from monitor.plan.attach_plan import plan
    from tests.unit.test_attach_plan import facts
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), lean=True)
    statuses = [ProbeStatus("invalidate_range_start", "lean-fexit", True)] + \
        [attach_spec(object(), s) for s in p.probes if s.off]
    lines = doctor.probe_lines(statuses, coverage.of(p, statuses), True)
    assert next(l for l in lines if l.startswith("invalidate_range_start")).split()[1:] == ["lean-fexit", "attached"]
    assert next(l for l in lines if l.startswith("invalidate_range_end")).endswith(
        "off: off in the lean configuration: ends (and sections in progress) not counted")
    assert any(l.startswith("configuration: lean (one fexit per invalidation)") for l in lines)
    assert doctor.verdict(statuses, coverage.of(p, statuses), True) == (True, "per-notifier outcomes: countable here")
    # the plan alone (not privileged): off, not unavailable
    planned = doctor.planned(p)
    assert any(l.startswith("notifier_register") and "off: off in the lean" in l
               for l in doctor.probe_lines(planned, coverage.of(p, planned), False))
    # an end that could not attach (not left off) still fails the verdict
    failed = [ProbeStatus("invalidate_range_start", "fentry", True), ProbeStatus("invalidate_range_end", "", False, "x")]
    assert verdict(failed, True)[0] is False


def test_the_default_says_counts_with_sampled_latency_and_where_it_cannot_run_why():
    from monitor.attach.probe import attach_spec
    from monitor.plan.attach_plan import plan
    from tests.unit.test_attach_plan import facts
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="sampled")
    statuses = [ProbeStatus(s.probe, s.methods[0], True) for s in p.probes if s.methods] + \
        [attach_spec(object(), s) for s in p.probes if s.off] + \
        [ProbeStatus("notifier:kvm_mmu_notifier_invalidate_range_start", "fentry", True)]
    lines = doctor.probe_lines(statuses, coverage.of(p, statuses), True)
    assert any(l.startswith("configuration: counts with sampled latency (an fexit on the start and an fentry "
                            "on its end") and "callbacks timed in windows of 5 s" in l for l in lines)
    assert any(l.startswith("notifier callbacks: attachable (fentry where the module has BTF") for l in lines)
    assert doctor.verdict(statuses, coverage.of(p, statuses), True) == (True, "per-notifier outcomes: countable here")
    off = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="off")
    lines = doctor.probe_lines(statuses, coverage.of(off, statuses), True)
    assert any(l.startswith("configuration: counts (latency off;") and l.endswith("no latency histograms")
               for l in lines)
    always = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), latency="always")
    lines = doctor.probe_lines(statuses, coverage.of(always, statuses), True)
    assert any(l.startswith("configuration: counts with latency always (") and l.endswith("every callback call "
               "timed by the callbacks' own entry and return programs, and the core start by an entry beside "
               "its fexit") for l in lines)
    assert not any("windows" in l for l in lines if l.startswith("configuration"))
    # kprobes only: every probe runs, and report() says why in a line of its own
    kp = plan(facts("5.4.0-150-generic", btf=True, kfunc=True), latency="sampled")
    assert not kp.counts and kp.latency_note.startswith("latency sampled needs the counts configuration")


def test_facts_say_which_features_were_probed():
    from tests.unit.test_attach_plan import facts
    lines = doctor.facts_lines(facts("5.4.0-150-generic", btf=True, kfunc=True, ringbuf=True), "root")
    assert "features     ring buffer yes (probed), module BTF not probed (the version decides)" in lines


def test_cgroups_line_says_where_victims_are_named_from():
    assert doctor.cgroups_line(Path("/sys/fs/cgroup/unified"), "/", None) == \
        "cgroups      cgroup2 at /sys/fs/cgroup/unified: victims named by cgroup, pod and container"
    assert doctor.cgroups_line(Path("/sys/fs/cgroup"), "/kubepods.slice", None).startswith(
        "cgroups      cgroup2 at /sys/fs/cgroup (its /kubepods.slice): ")
    assert doctor.cgroups_line(None, None, "no cgroup2 filesystem is mounted") == \
        "cgroups      victims' cgroup is unknown: no cgroup2 filesystem is mounted"
