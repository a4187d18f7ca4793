"""The kprobe flavour of probes that have an fentry one is compiled only where it is wanted:
where every such probe prefers fentry it is left out, and a start whose fentry the kernel
refuses after all compiles again with kprobe forced on the refused probes."""
import re
from pathlib import Path

import pytest

from monitor.attach import session
from monitor.attach.probe import ProbeStatus
from monitor.plan import attach_plan
from monitor.plan.attach_plan import FENTRY, KPROBE
from tests.unit import test_attach_plan


def facts(kfunc=True):
    """Debian 12's kernel with BTF: every probe with an fentry flavour can take it."""
    return test_attach_plan.facts("6.1.0-56-amd64", btf=True, kfunc=kfunc)


BPF = Path(__file__).resolve().parents[2] / "bpf"
TWINS = ("invalidate_range_start", "invalidate_range_end", "notifier_release", "oom_reap_task_mm")


def test_fentry_everywhere_leaves_the_kprobe_flavour_out():
    p = attach_plan.plan(facts())
    assert not p.kprobe_twins and "-DKPROBE_TWINS=0" in p.cflags
    assert attach_plan.plan(facts(kfunc=False)).kprobe_twins
    assert attach_plan.plan(facts(), force={"oom_reap_task_mm": KPROBE}).kprobe_twins


def test_only_the_kprobe_flavour_of_fentry_probes_is_behind_the_knob():
    """Programs inside #if KPROBE_TWINS are exactly the kprobe programs of probes that have an
    fentry flavour: callbacks' and registration's kprobes stay whatever the knob."""
    gated = set()
    for f in BPF.glob("*.bpf.c"):
        stack = []          # for each open #if: whether it is KPROBE_TWINS's
        for line in f.read_text().splitlines():
            if line.startswith("#if"):
                stack.append(line.strip() == "#if KPROBE_TWINS")
            elif line.startswith("#endif"):
                stack.pop()
            elif (m := re.match(r"int (\w+)\(", line)) and any(stack):
                gated.add(m.group(1))
    by = {p.probe: p for p in attach_plan.plan(facts(kfunc=False)).probes}
    wanted = {prog for name in TWINS for prog in by[name].programs[KPROBE] if prog}
    assert gated == wanted


class FakeBPF:
    def __init__(self, plan):
        self.plan, self.cleaned = plan, False

    def cleanup(self):
        self.cleaned = True


@pytest.fixture
def compiled(monkeypatch):
    """The FakeBPF of each compile, in order."""
    out = []
    monkeypatch.setattr(session.loader, "compile_program", lambda plan, f: out.append(FakeBPF(plan)) or out[-1])
    monkeypatch.setattr(session, "_mark_mrelease_text", lambda bpf, symbols: None)
    return out


def test_a_refused_fentry_compiles_again_with_kprobe_on_that_probe(monkeypatch, compiled):
    tried = []

    def attach(bpf, spec):
        tried.append((len(compiled), spec.probe, spec.methods))
        refused = spec.probe == "invalidate_range_start" and spec.methods[0] == FENTRY
        return ProbeStatus(spec.probe, spec.methods[0] if spec.methods else "", not refused and bool(spec.methods),
                           "fentry: Operation not supported" if refused else "")
    monkeypatch.setattr(session, "attach_spec", attach)

    assert {p.probe for p in attach_plan.plan(facts()).probes if p.methods == (FENTRY, KPROBE)} == set(TWINS)
    bpf, plan, statuses = session.compile_and_attach(facts(), None, {}, None, None, False, ())
    first, second = compiled
    assert first.cleaned and not second.cleaned and bpf is second
    assert not first.plan.kprobe_twins and plan.kprobe_twins
    # The first compile has no kprobe flavour to fall back on: fentry was the only try.
    assert (1, "invalidate_range_start", (FENTRY,)) in tried
    assert (2, "invalidate_range_start", (KPROBE,)) in tried
    assert (2, "invalidate_range_end", (FENTRY, KPROBE)) in tried
    start = statuses["invalidate_range_start"]
    assert (start.attached, start.method) == (True, KPROBE)
    assert start.reason == "fentry refused (fentry: Operation not supported): kprobe stands in"


def test_fentry_that_attaches_compiles_once_and_disabled_probes_do_not_retry(monkeypatch, compiled):
    monkeypatch.setattr(session, "attach_spec",
                        lambda bpf, spec: ProbeStatus(spec.probe, spec.methods[0] if spec.methods else "", bool(spec.methods)))
    _, _, statuses = session.compile_and_attach(facts(), None, {}, None, None, False, ("invalidate_range_end",))
    assert len(compiled) == 1
    assert statuses["invalidate_range_end"].disabled
