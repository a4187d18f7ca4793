"""doctor's verdict: pure, from statuses."""
from monitor import doctor
from monitor.probes import ProbeStatus


def st(probe, attached, disabled=False):
    return ProbeStatus(probe, "kprobe" if attached else "", attached,
                       "" if attached else "disabled by configuration" if disabled else "why", disabled=disabled)


def test_verdict():
    core = [st("invalidate_range_start", True), st("invalidate_range_end", True)]
    assert doctor.verdict(core, "", True) == (True, "per-notifier outcomes: countable here")
    assert doctor.verdict(core, "", False)[0] is False              # only a real attach counts
    assert doctor.verdict(core, "no kprobes", True)[0] is False
    tp_only = [st("invalidate_range_start", False), st("oom:mark_victim", True)]
    assert doctor.verdict(tp_only, "", True) == \
        (False, "per-notifier outcomes: NOT countable here; OOM tracepoint counters only")


def test_disabled_is_a_flag_not_a_reason():
    lines = doctor.probe_lines([st("oom:mark_victim", False, disabled=True), st("oom_reap_task_mm", False)], "", True)
    assert any(l.startswith("oom:mark_victim") and l.endswith("off: disabled by configuration") for l in lines)
    assert any(l.startswith("oom_reap_task_mm") and l.endswith("unavailable: why") for l in lines)


def test_each_callback_says_its_method_and_why_a_fallback():
    statuses = [ProbeStatus("notifier:kvm_mmu_notifier_invalidate_range_start", "fentry", True),
                ProbeStatus("notifier:fixture_interval_invalidate", "kprobe", True,
                            "fentry: mnmon_fixture:fixture_interval_invalidate: no BTF")]
    lines = doctor.probe_lines(statuses, "", True, "", "")
    kvm = next(l for l in lines if l.startswith("notifier:kvm_"))
    fix = next(l for l in lines if l.startswith("notifier:fixture_"))
    assert kvm.split()[1:] == ["fentry", "attached"]
    assert fix.split()[1:3] == ["kprobe", "attached"] and fix.endswith("(fentry: mnmon_fixture:"
                                                                         "fixture_interval_invalidate: no BTF)")
    assert any(l.startswith("notifier callbacks: attachable (fentry where the module has BTF, which holds the "
                            "module loaded while attached; else kprobe)") for l in lines)
    pinned = doctor.probe_lines(statuses, "", True, "", "kprobe chosen by configuration (probes.callbacks)")
    assert any("attachable (kprobe; not fentry: kprobe chosen by configuration (probes.callbacks))" in l
               for l in pinned)


def test_lean_says_what_it_keeps_and_leaves_off_and_still_counts_outcomes():
    from monitor.attach import attach_spec
    from monitor.attach_plan import plan
    from tests.unit.test_attach_plan import facts
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True), lean=True)
    statuses = [ProbeStatus("invalidate_range_start", "lean-fexit", True)] + \
        [attach_spec(object(), s) for s in p.probes if s.off]
    lines = doctor.probe_lines(statuses, p.callbacks, True, p.walk, p.callback_fentry, p.lean)
    assert next(l for l in lines if l.startswith("invalidate_range_start")).split()[1:] == ["lean-fexit", "attached"]
    assert next(l for l in lines if l.startswith("invalidate_range_end")).endswith(
        "off: off in the lean configuration: ends (and sections in progress) not counted")
    assert any(l.startswith("configuration: lean (one fexit per invalidation)") for l in lines)
    assert doctor.verdict(statuses, p.callbacks, True) == (True, "per-notifier outcomes: countable here")
    # the plan alone (not privileged): off, not unavailable
    assert any(l.startswith("notifier_register") and "off: off in the lean" in l
               for l in doctor.probe_lines(doctor.planned(p), "", False, lean=True))
    # an end that could not attach (not left off) still fails the verdict
    failed = [ProbeStatus("invalidate_range_start", "fentry", True), ProbeStatus("invalidate_range_end", "", False, "x")]
    assert doctor.verdict(failed, "", True)[0] is False
