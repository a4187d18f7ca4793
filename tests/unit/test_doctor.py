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
