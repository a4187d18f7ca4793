"""attach_plan.plan(facts, force=...): pinning a probe to one attach method (the benchmarks
compare kprobe with fentry on one kernel)."""
import pytest

from monitor.plan import attach_plan
from monitor.plan.attach_plan import FENTRY, KPROBE
from monitor.kernel.facts import SYMBOLS_OF_INTEREST, TRACEPOINTS_OF_INTEREST, KernelFacts


def facts(**kw):
    """Debian 12's stock kernel as the real-kernel bed sees it: fentry and kprobes both work."""
    base = dict(release="6.1.0-56-amd64", version=(6, 1, 0), btf=True, headers="matching",
                headers_dir="/lib/modules/6.1.0-56-amd64/build", kprobes=True, kfunc=True,
                symbols=frozenset(SYMBOLS_OF_INTEREST), tracepoints=frozenset(TRACEPOINTS_OF_INTEREST))
    base.update(kw)
    return KernelFacts(**base)


def probes(plan):
    return {p.probe: p for p in plan.probes}


def test_without_force_fentry_comes_first_and_kprobe_is_the_fallback():
    p = attach_plan.plan(facts())
    assert probes(p)["invalidate_range_start"].methods == (FENTRY, KPROBE)
    assert "-DCORE_KFUNC=1" in p.cflags


def test_forced_kprobe_leaves_no_fentry_and_compiles_the_kfunc_programs_out():
    p = attach_plan.plan(facts(), force={"invalidate_range_start": KPROBE, "invalidate_range_end": KPROBE,
                                         "oom_reap_task_mm": KPROBE})
    by = probes(p)
    for name in ("invalidate_range_start", "invalidate_range_end", "oom_reap_task_mm"):
        assert by[name].methods == (KPROBE,), name
    assert "-DCORE_KFUNC=0" in p.cflags and "-DREAP_KFUNC=0" in p.cflags
    # Probes not named keep their plan.
    assert by["notifier_register"].methods == (KPROBE,)
    assert by["oom:mark_victim"].methods == ("tracepoint",)


def test_forced_fentry_drops_the_kprobe_fallback():
    by = probes(attach_plan.plan(facts(), force={"invalidate_range_start": FENTRY}))
    assert by["invalidate_range_start"].methods == (FENTRY,)
    assert by["invalidate_range_end"].methods == (FENTRY, KPROBE)


def test_a_forced_method_the_kernel_cannot_give_leaves_the_probe_off_with_the_reason():
    spec = probes(attach_plan.plan(facts(kfunc=False), force={"invalidate_range_start": FENTRY}))[
        "invalidate_range_start"]
    assert spec.methods == ()
    assert spec.reason == "fentry forced, but only kprobe can attach it here"
    # A probe that has no fentry program at all.
    spec = probes(attach_plan.plan(facts(), force={"notifier_register": FENTRY}))["notifier_register"]
    assert spec.methods == () and "fentry forced" in spec.reason


@pytest.mark.parametrize("force, names", [
    ({"invalidate_range_strat": KPROBE}, "invalidate_range_strat"),          # typo: not silently ignored
    ({"oom:mark_victim": KPROBE}, "oom:mark_victim"),                        # a tracepoint probe
    ({"invalidate_range_start": "kprob"}, "invalidate_range_start=kprob"),   # not a method
    ({"invalidate_range_start": "tracepoint"}, "invalidate_range_start=tracepoint"),
])
def test_what_cannot_be_forced_is_an_error_naming_it(force, names):
    with pytest.raises(ValueError, match=names):
        attach_plan.plan(facts(), force=force)


def test_interval_insert_cannot_be_forced_before_interval_notifiers_exist():
    with pytest.raises(ValueError, match="interval_notifier_insert"):
        attach_plan.plan(facts(release="5.4.0", version=(5, 4, 0)), force={"interval_notifier_insert": KPROBE})


def test_force_is_not_consumed_from_the_callers_dict():
    force = {"invalidate_range_start": KPROBE}
    attach_plan.plan(facts(), force=force)
    assert force == {"invalidate_range_start": KPROBE}
