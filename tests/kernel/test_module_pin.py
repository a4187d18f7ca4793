"""Module unload under a running mnmon: fentry on a module's callbacks holds the module
loaded (the kernel takes a reference for each BPF trampoline on module text, as 6.1 does),
until mnmon lets go; kprobes do not, and a module reloaded under them is picked up again.
In a module of its own: test_probes.py's monitor, alive through its module, holds kvm."""
import subprocess
from pathlib import Path

import pytest

from tests.kernel import kernel_facts
from tests.kernel.test_probes import KVM_END, KVM_START, _kvm_equals_tracepoint, wait_attached

pytestmark = [pytest.mark.skipif(not kernel_facts.at_least(5, 11), reason="no module BTF before 5.11: kprobes only")]


def refcnt(module):
    return int(Path(f"/sys/module/{module}/refcnt").read_text())


def rmmod(*modules):
    return subprocess.run(["rmmod", *modules], capture_output=True, text=True)


def test_fentry_holds_the_module_loaded_until_mnmon_lets_go():
    from monitor.attach.session import Monitor
    before = refcnt("kvm")
    mon = Monitor.start()
    try:
        st = mon.callbacks[KVM_START].status
        assert st.method == "fentry", st
        # one reference per trampoline: entry and return share kvm's start callback's
        assert refcnt("kvm") > before
        r = rmmod("kvm_amd", "kvm")
        assert r.returncode != 0 and "in use" in r.stderr, r
        assert Path("/sys/module/kvm").exists()
    finally:
        mon.close()
        subprocess.run(["modprobe", "kvm_amd"], check=True)
    assert refcnt("kvm") == before
    # let go: the module unloads as it did before mnmon
    assert rmmod("kvm_amd", "kvm").returncode == 0
    subprocess.run(["modprobe", "kvm_amd"], check=True)


def test_module_reloaded_under_kprobes_is_picked_up():
    # probes.callbacks=kprobe: kvm reloaded under a running monitor, its callbacks come back
    # from the new BTF
    from monitor.attach.session import Monitor
    mon = Monitor.start(callbacks="kprobe")
    try:
        assert mon.callbacks[KVM_START].status.method == "kprobe"
        subprocess.run(["rmmod", "kvm_amd", "kvm"], check=True)
        mon.refresh()
        assert not mon.is_attached(KVM_START[0])
        subprocess.run(["modprobe", "kvm_amd"], check=True)
        took = wait_attached(mon, KVM_START[0], KVM_END[0], timeout=10)
        assert took < 10
        assert _kvm_equals_tracepoint(mon, iterations=100)[0] >= 100
    finally:
        mon.close()
