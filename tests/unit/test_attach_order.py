"""Which half of an entry/return probe pair attaches first (monitor.attach.probe.attach_spec)."""
from monitor.attach import probe as attach
from monitor.plan.attach_plan import FENTRY, KPROBE, ProbeSpec


class RecordingBPF:
    """bcc's attach calls, recorded; fail_on: a program name whose attach raises."""

    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __getattr__(self, name):
        def call(**kw):
            fn = kw.get("fn_name")
            if name.startswith("attach") and fn == self.fail_on:
                raise Exception(f"Failed to load BPF program {fn!r}: Permission denied")
            self.calls.append((name, fn))
        return call


SPEC = ProbeSpec("invalidate_range_start", ("__mmu_notifier_invalidate_range_start",), (FENTRY, KPROBE),
                 {FENTRY: ("kfunc_start", "kretfunc_start"), KPROBE: ("core_start_entry", "core_start_return")})


def test_the_return_program_attaches_before_the_entry():
    # An entry alone would leave the calls it sees in flight, counted as lost later.
    bpf = RecordingBPF()
    st = attach.attach_spec(bpf, SPEC)
    assert (st.method, st.attached) == (FENTRY, True)
    assert bpf.calls == [("attach_kretfunc", b"kretfunc_start"), ("attach_kfunc", b"kfunc_start")]


def test_a_refused_entry_rolls_its_return_back_before_the_fallback():
    bpf = RecordingBPF(fail_on=b"kfunc_start")
    st = attach.attach_spec(bpf, SPEC)
    assert (st.method, st.attached) == (KPROBE, True)
    assert bpf.calls == [("attach_kretfunc", b"kretfunc_start"), ("detach_kretfunc", b"kretfunc_start"),
                         ("attach_kretprobe", b"core_start_return"), ("attach_kprobe", b"core_start_entry")]
