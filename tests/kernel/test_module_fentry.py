"""monitor.attach.module_fentry on a real module: fentry and fexit on kvm.ko's
kvm_mmu_notifier_invalidate_range_start count what the kernel's own trace event,
kvm:kvm_unmap_hva_range (emitted once at the top of that function), counts."""
import os
from pathlib import Path

import pytest

from monitor.attach.module_fentry import ModuleFentry, ModuleFentryError
from bed import scenarios
from bed.evidence import HitCounter

FUNCTION = "kvm_mmu_notifier_invalidate_range_start"
SOURCE = r"""
BPF_ARRAY(calls, u64, 2);       /* 0: entries, 1: returns */

static void count(int k) {
    u64 *v = calls.lookup(&k);
    if (v)
        __sync_fetch_and_add(v, 1);
}

int kvm_start_entry(u64 *ctx) { count(0); return 0; }
int kvm_start_return(u64 *ctx) { count(1); return 0; }
"""


@pytest.fixture(scope="module")
def bpf():
    from bcc import BPF
    if not Path("/dev/kvm").exists():
        pytest.fail("/dev/kvm missing: kvm_amd did not load in the guest")
    return BPF(text=SOURCE.encode())


def link_info(fd):
    return dict(line.split(":\t", 1) for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
                if ":\t" in line)


def test_fentry_and_fexit_on_a_module_function_count_what_the_kernel_traces(bpf):
    with ModuleFentry() as mf:
        entry = mf.attach(bpf, "kvm_start_entry", "kvm", FUNCTION)
        ret = mf.attach(bpf, "kvm_start_return", "kvm", FUNCTION, ret=True)
        # A BPF trampoline link (tracing), not a kprobe.
        assert link_info(entry)["link_type"].strip() == "tracing"
        assert link_info(ret)["link_type"].strip() == "tracing"
        with HitCounter("kvm/kvm_unmap_hva_range") as hits:
            child = scenarios.run_kvm(iterations=300, pages=16)
        entries, returns = bpf[b"calls"][0].value, bpf[b"calls"][1].value
    assert child.returncode == 0
    assert hits.hits >= 300
    assert entries == hits.hits, f"fentry counted {entries}, the kernel traced {hits.hits}"
    assert returns == hits.hits, f"fexit counted {returns}, the kernel traced {hits.hits}"
    # Closed links detach: nothing more is counted.
    scenarios.run_kvm(iterations=20, pages=16)
    assert (bpf[b"calls"][0].value, bpf[b"calls"][1].value) == (entries, returns)
    print(f"kvm:{FUNCTION}: fentry {entries}, fexit {returns}, kvm:kvm_unmap_hva_range {hits.hits}")


def test_a_missing_function_or_module_is_one_clear_error(bpf):
    with ModuleFentry() as mf:
        with pytest.raises(ModuleFentryError, match="kvm:no_such_function: no such function"):
            mf.attach(bpf, "kvm_start_entry", "kvm", "no_such_function")
        with pytest.raises(ModuleFentryError, match="no_such_module:.*no BTF"):
            mf.attach(bpf, "kvm_start_entry", "no_such_module", FUNCTION)
        assert mf.fds == []
    assert os.path.exists("/sys/kernel/btf/kvm")
