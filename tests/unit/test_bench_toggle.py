"""The benchmark's re-attach of a detached fentry program, as 5.10 needs it."""
import os

import pytest

from bench import toggle
from monitor.plan import attach_plan


class Loaded:
    def __init__(self):
        self.fd = os.open(os.devnull, os.O_RDONLY)


class OldKernelBPF:
    """bcc's BPF as 5.10 answers it: a tracing program attaches once; its name keyed
    with bcc's kfunc__/kretfunc__ prefix in funcs while loaded."""

    def __init__(self, *names):
        self.funcs = {n: Loaded() for n in names}
        self.spent, self.attached = set(), []

    def _attach(self, name):
        prog = self.funcs.setdefault(name, Loaded())     # bcc loads what is not loaded
        if id(prog) in self.spent:
            raise Exception("Failed to attach BPF to exit kernel func")
        self.spent.add(id(prog))
        self.attached.append(name)

    def attach_kretfunc(self, fn_name):
        self._attach(b"kretfunc__" + fn_name.removeprefix(b"kretfunc__"))

    def attach_kfunc(self, fn_name):
        self._attach(b"kfunc__" + fn_name.removeprefix(b"kfunc__"))

    def attach_kprobe(self, event, fn_name):
        raise Exception("Failed to attach BPF program to kprobe")


def test_a_spent_fentry_program_is_loaded_afresh_and_attached(monkeypatch):
    bpf = OldKernelBPF(b"kretfunc__start_return")
    spent = bpf.funcs[b"kretfunc__start_return"]
    bpf.spent.add(id(spent))     # attached once, then detached
    closed = []
    monkeypatch.setattr(toggle.os, "close", lambda fd: closed.append(fd))
    toggle.reattach(bpf, attach_plan.FENTRY, "__mmu_notifier_invalidate_range_start", "start_return", True)
    assert bpf.attached == [b"kretfunc__start_return"]
    assert bpf.funcs[b"kretfunc__start_return"] is not spent
    assert closed == [spent.fd]             # the spent program is closed, not leaked


def test_a_program_never_spent_attaches_as_it_is():
    bpf = OldKernelBPF(b"kfunc__start_entry")
    prog = bpf.funcs[b"kfunc__start_entry"]
    toggle.reattach(bpf, attach_plan.FENTRY, "__mmu_notifier_invalidate_range_start", "kfunc__start_entry", False)
    assert bpf.funcs[b"kfunc__start_entry"] is prog and bpf.attached == [b"kfunc__start_entry"]


def test_other_methods_fail_as_before():
    bpf = OldKernelBPF()
    with pytest.raises(Exception, match="kprobe"):
        toggle.reattach(bpf, attach_plan.KPROBE, "__mmu_notifier_invalidate_range_start", "start_entry", False)
