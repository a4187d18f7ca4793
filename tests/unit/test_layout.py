"""monitor.kernel.layout: every field mnmon's BPF reads, located in BTF blobs written here
(tests/unit/test_btf.py's Blob) and in this machine's own vmlinux BTF where it has one."""
from pathlib import Path

import pytest

from monitor.kernel import btf as B
from monitor.kernel import layout
from monitor.kernel.btf import BTF
from tests.unit.test_btf import Blob

VMLINUX = Path("/sys/kernel/btf/vmlinux")


def kernel_blob(drop=(), resize=None, parent="__parent"):
    """A vmlinux-like blob with every struct FIELDS names, each member 8 bytes apart (or as
    sized), minus the members in drop; resize: {member: bytes}."""
    b = Blob()
    u8, u32, u64 = b.int("u8", 1, 8), b.int("unsigned int", 4, 32), b.int("long unsigned int", 8, 64)
    ptr = b.ref(B.PTR, 0)
    sizes = {1: u8, 4: u32, 8: u64}
    resize = resize or {}
    structs = {}
    for _name, struct_name, paths, size, _group in layout.FIELDS + tuple(o + (None,) for o in layout.OPTIONAL):
        path = parent if paths == ("__parent", "parent") else paths
        structs.setdefault(struct_name, []).append((path, size))
    for struct_name, members in structs.items():
        out, off = [], 0
        for path, size in members:
            head, _, rest = path.partition(".")
            if head in drop:
                continue
            want = resize.get(head, size or 8)
            t = sizes.get(want, ptr)
            if rest:        # one level of nesting: a struct holding the inner member at offset 0
                t = b.struct(f"{struct_name}_{head}", [(rest, t, 0)], size=8)
            elif want == 8 and size == 8:
                t = ptr
            out.append((head, t, off * 8))
            off += 8
        structs[struct_name] = b.struct(struct_name, out, size=8 * off)
    return BTF(b.data())


def test_every_field_found_with_its_offset_in_a_complete_kernel():
    lay = layout.from_btf(kernel_blob())
    assert lay.missing == {}
    assert set(lay.offsets) == {f[0] for f in layout.FIELDS} | {o[0] for o in layout.OPTIONAL}
    assert lay.paths["KN_PARENT"] == ("kernfs_node", "__parent")
    assert "-DBTF_LAYOUT=1" in lay.cflags() and f"-DF_RANGE_END={lay.offsets['RANGE_END']}" in lay.cflags()


def test_kernfs_parent_before_6_15_is_found_by_its_old_name():
    lay = layout.from_btf(kernel_blob(parent="parent"))
    assert lay.paths["KN_PARENT"] == ("kernfs_node", "parent") and not lay.missing


@pytest.mark.parametrize("drop, resize, group, why", [
    (("flags",), None, layout.RANGE, "struct mmu_notifier_range has no member flags"),
    (("has_itree",), None, layout.WALK, "struct mmu_notifier_subscriptions has no member has_itree"),
    ((), {"pid": 8}, layout.TASK, "struct task_struct.pid is 8 bytes here, mnmon reads 4"),
    (("dfl_cgrp",), None, layout.CGROUP, "struct css_set has no member dfl_cgrp"),
])
def test_a_missing_or_resized_field_names_itself_and_drops_only_its_group(drop, resize, group, why):
    lay = layout.from_btf(kernel_blob(drop=drop, resize=resize))
    assert lay.missing == {group: why}
    assert lay.lacks(group) == why and lay.lacks(layout.RANGE if group != layout.RANGE else layout.LIST) == ""
    assert not any(f[0] in lay.offsets for f in layout.FIELDS if f[4] == group)
    assert "missing: " + why in lay.summary()


def test_the_optional_two_pass_op_is_simply_absent_before_7_1():
    lay = layout.from_btf(kernel_blob(drop=("invalidate_start",)))
    assert lay.missing == {} and "MNIOPS_INVALIDATE_START" not in lay.offsets


def test_without_sequence_numbers_the_walk_runs_and_the_summary_says_what_stays_unknown():
    lay = layout.from_btf(kernel_blob(drop=("invalidate_seq",)))
    assert lay.missing == {} and not {"MNI_SEQ", "SUBS_SEQ"} & set(lay.offsets)
    assert "no invalidate_seq: which of several overlapping interval notifiers failed" in lay.summary()
    assert "invalidate_seq" not in layout.from_btf(kernel_blob()).summary()


def test_no_btf_falls_back_to_own_headers_only(tmp_path):
    assert layout.read("matching", tmp_path / "none") == (layout.headers_only(), "")
    assert layout.read("other", tmp_path / "none") == (None, "no BTF (/sys/kernel/btf/vmlinux)")
    (tmp_path / "bad").write_bytes(b"\0" * 32)
    found, why = layout.read("other", tmp_path / "bad")
    assert found is None and why.startswith("BTF unreadable (bad magic")
    assert layout.headers_only().cflags() == ["-DBTF_LAYOUT=0"]


@pytest.mark.skipif(not VMLINUX.exists(), reason="no vmlinux BTF on this machine")
def test_this_machines_kernel_has_every_field():
    lay, why = layout.read("other")
    assert why == "" and lay.missing == {}, lay.missing
    # the walk's anchors, as the kernel lays them out (interval_tree_node at 0 of its notifier)
    assert lay.offsets["MNI_TREE"] == 0 and lay.offsets["ITN_RB"] == 0 and lay.offsets["SUBS_LIST"] == 0
