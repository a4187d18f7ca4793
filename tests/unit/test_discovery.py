"""Which prototypes are notifier callbacks (every API generation), and the BTF scanner's
memory of what it has already reported."""
import pytest

from monitor.attach.discovery import INTERVAL, LIST, LIST_END, BTFScanner, Callback, callbacks_in, classify
from monitor.kernel.btf import BTF
from tests.unit.test_btf import Blob, vmlinux_like

MN = "struct mmu_notifier *"
MNI = "struct mmu_interval_notifier *"
RANGE = "struct mmu_notifier_range *"
MM = "struct mm_struct *"
UL = "long unsigned int"


@pytest.mark.parametrize("name, ret, params, kind", [
    # 4.19: (mn, mm, start, end, bool blockable) and (mn, mm, start, end)
    ("kvm_mmu_notifier_invalidate_range_start", "int", [MN, MM, UL, UL, "_Bool"], LIST),
    ("kvm_mmu_notifier_invalidate_range_end", "void", [MN, MM, UL, UL], LIST_END),
    # ...which ->invalidate_range shares with the end: only the name tells them apart
    ("kvm_mmu_notifier_invalidate_range", "void", [MN, MM, UL, UL], None),
    ("kvm_mmu_notifier_clear_young", "int", [MN, MM, UL, UL], None),
    ("mn_4_19_start_returning_bool", "_Bool", [MN, MM, UL, UL, "_Bool"], None),
    # 5.0+: (mn, range)
    ("nouveau_svmm_invalidate_range_start", "int", [MN, RANGE], LIST),
    ("kvm_mmu_notifier_invalidate_range_end", "void", [MN, RANGE], LIST_END),
    ("some_void_mn_range_function", "void", [MN, RANGE], LIST_END),
    ("mn_range_returning_bool", "_Bool", [MN, RANGE], None),
    # 5.5+ interval: (sub, range, cur_seq); 7.1 invalidate_start adds finish **
    ("nouveau_svm_range_invalidate", "_Bool", [MNI, RANGE, UL], INTERVAL),
    ("drm_gpusvm_invalidate_start", "_Bool", [MNI, RANGE, UL, "struct mmu_interval_notifier_finish * *"],
     INTERVAL),
    ("interval_returning_int", "int", [MNI, RANGE, UL], None),
    ("interval_five_params", "_Bool", [MNI, RANGE, UL, UL, UL], None),
    ("interval_two_params", "_Bool", [MNI, RANGE], None),
    ("drm_gpusvm_invalidate_finish", "void", ["struct mmu_interval_notifier_finish *"], None),
    # the interval API's own functions are not callbacks
    ("mmu_interval_notifier_insert", "int", [MNI, MM, UL, UL, "struct mmu_interval_notifier_ops *"], None),
    ("__mmu_interval_notifier_insert", "int",
     [MNI, MM, "struct mmu_notifier_subscriptions *", UL, UL, "struct mmu_interval_notifier_ops *"], None),
    ("mmu_interval_read_begin", UL, [MNI], None),
    ("mmu_interval_set_seq", "void", [MNI, UL], None),
    ("__mmu_notifier_invalidate_range_start", "int", [RANGE], None),
    ("__mmu_notifier_register", "int", [MN, MM], None),
    ("no_params", "void", [], None),
])
def test_classify(name, ret, params, kind):
    assert classify(name, ret, params) == kind


def test_callbacks_in_a_blob():
    b, _ = vmlinux_like()
    assert callbacks_in(BTF(b.data()), "vmlinux") == [
        Callback("kvm_mmu_notifier_invalidate_range_start", "vmlinux", LIST),
        Callback("kvm_mmu_notifier_invalidate_range_end", "vmlinux", LIST_END),
        Callback("hmm_test_invalidate", "vmlinux", INTERVAL),
    ]


def test_callback_kind_name():
    assert [Callback("f", "m", k).kind_name for k in (LIST, INTERVAL, LIST_END)] == ["list", "interval", "list_end"]


def module_blob(base_blob, t, name):
    mod = Blob(base=base_blob)
    p = mod.func_proto(t["int"], [("mn", t["mn_ptr"]), ("range", t["range_ptr"])])
    mod.func(f"{name}_invalidate_range_start", p)
    p = mod.func_proto(t["bool"], [("sub", t["mni_ptr"]), ("range", t["range_ptr"]), ("seq", t["ulong"])])
    mod.func(f"{name}_range_invalidate", p)
    p = mod.func_proto(t["int"], [("x", t["ulong"])])
    mod.func(f"{name}_probe", p)
    return mod.data()


@pytest.fixture
def btf_dir(tmp_path):
    base, t = vmlinux_like()
    (tmp_path / "vmlinux").write_bytes(base.data())
    (tmp_path / "nouveau").write_bytes(module_blob(base, t, "nouveau"))
    return tmp_path, base, t


def test_scanner_reports_each_blob_once(btf_dir):
    root, _base, _t = btf_dir
    scanner = BTFScanner(root)
    assert scanner.available()
    assert scanner.scan() == [
        Callback("nouveau_invalidate_range_start", "nouveau", LIST),
        Callback("nouveau_range_invalidate", "nouveau", INTERVAL),
        Callback("kvm_mmu_notifier_invalidate_range_start", "vmlinux", LIST),
        Callback("kvm_mmu_notifier_invalidate_range_end", "vmlinux", LIST_END),
        Callback("hmm_test_invalidate", "vmlinux", INTERVAL),
    ]
    assert scanner.scan() == []
    scanner.forget("nouveau")           # unloaded; the next load is scanned again
    assert scanner.scan() == [Callback("nouveau_invalidate_range_start", "nouveau", LIST),
                              Callback("nouveau_range_invalidate", "nouveau", INTERVAL)]
    assert scanner.scan() == []


def test_scanner_finds_a_module_loaded_later_and_skips_unreadable_btf(btf_dir):
    root, base, t = btf_dir
    scanner = BTFScanner(root)
    assert len(scanner.scan()) == 5
    (root / "amdgpu").write_bytes(module_blob(base, t, "amdgpu"))
    (root / "broken").write_bytes(b"\x00" * 32)                   # bad magic: skipped, not raised
    assert scanner.scan() == [Callback("amdgpu_invalidate_range_start", "amdgpu", LIST),
                              Callback("amdgpu_range_invalidate", "amdgpu", INTERVAL)]
    assert scanner.scan() == []


def test_scanner_without_btf(tmp_path):
    scanner = BTFScanner(tmp_path / "btf")
    assert not scanner.available()
    assert scanner.scan() == []
