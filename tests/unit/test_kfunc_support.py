"""Whether fentry can attach, told without bcc's own kernel symbol cache."""
import types

import pytest

from monitor.attach import loader
from monitor.kernel.symbols import Symbol, Symbols

WITH = Symbols([Symbol(0xffffffff81200000, "bpf_trampoline_link_prog", "vmlinux")])
WITHOUT = Symbols([Symbol(0xffffffff81200000, "other", "vmlinux")])


def fake_bcc(btf):
    return types.SimpleNamespace(lib=types.SimpleNamespace(bpf_has_kernel_btf=lambda: btf))


@pytest.mark.parametrize("machine, btf, symbols, expected", [
    ("x86_64", True, WITH, True),
    ("x86_64", False, WITH, False),       # no vmlinux BTF
    ("x86_64", True, WITHOUT, False),     # no trampolines in this kernel
    ("aarch64", True, WITH, False),       # bcc has no trampolines but on x86_64
])
def test_kfunc_support(monkeypatch, machine, btf, symbols, expected):
    monkeypatch.setattr(loader.platform, "machine", lambda: machine)
    assert loader.kfunc_support(fake_bcc(btf), symbols) is expected
