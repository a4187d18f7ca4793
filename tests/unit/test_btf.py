"""monitor.kernel.btf on blobs written here with struct.pack (Documentation/bpf/btf.rst), and
on this machine's /sys/kernel/btf/vmlinux where it has one."""
import struct
from pathlib import Path

import pytest

from monitor.kernel import btf as B
from monitor.kernel.btf import BTF, BTFError
from monitor.attach.discovery import LIST, LIST_END, callbacks_in

HDR = struct.Struct("<HBBIIIII")


class Blob:
    """A BTF blob written type by type; split on `base` (another Blob) as a module's is:
    its type ids continue the base's and its string offsets start at the base's string length."""

    def __init__(self, base=None):
        self.first_id = base.next_id if base else 1
        self.next_id = self.first_id
        self.str_base = base.str_len if base else 0
        self.strings = bytearray() if base else bytearray(b"\0")
        self.types = bytearray()
        self.offsets = {}

    @property
    def str_len(self):
        return self.str_base + len(self.strings)

    def s(self, name):
        """String offset of name, as the blob's types refer to it (0: no name)."""
        if not name:
            return 0
        if name not in self.offsets:
            self.offsets[name] = self.str_len
            self.strings += name.encode() + b"\0"
        return self.offsets[name]

    def add(self, kind, name, vlen, size_or_type, trailer=b"", kind_flag=0):
        self.types += struct.pack("<III", self.s(name), (kind_flag << 31) | (kind << 24) | vlen, size_or_type)
        self.types += trailer
        self.next_id += 1
        return self.next_id - 1

    def int(self, name, size, bits, encoding=0):
        return self.add(B.INT, name, 0, size, struct.pack("<I", (encoding << 24) | bits))

    def struct(self, name, members=(), size=8, kind=B.STRUCT, kind_flag=0):
        trailer = b"".join(struct.pack("<III", self.s(m), t, off) for m, t, off in members)
        return self.add(kind, name, len(members), size, trailer, kind_flag)

    def ref(self, kind, to, name=""):
        return self.add(kind, name, 0, to)

    def func_proto(self, ret, params):
        return self.add(B.FUNC_PROTO, "", len(params), ret,
                        b"".join(struct.pack("<II", self.s(n), t) for n, t in params))

    def func(self, name, proto, linkage=1):
        # A FUNC's vlen is its linkage (1: global), not a count of trailing items.
        return self.add(B.FUNC, name, linkage, proto)

    def data(self, magic=B.MAGIC):
        return HDR.pack(magic, 1, 0, HDR.size, 0, len(self.types), len(self.types), len(self.strings)) \
            + bytes(self.types) + bytes(self.strings)


def vmlinux_like():
    """(Blob, ids): what a kernel's BTF holds for the notifier API of 5.5+."""
    b = Blob()
    t = {}
    t["int"] = b.int("int", 4, 32, encoding=1)                  # signed
    t["_Bool"] = b.int("_Bool", 1, 8, encoding=4)               # BTF_INT_BOOL
    t["ulong"] = b.int("long unsigned int", 8, 64)
    t["mn"] = b.struct("mmu_notifier", [("ops", t["ulong"], 0)], size=24)
    t["range"] = b.struct("mmu_notifier_range", [("start", t["ulong"], 0), ("end", t["ulong"], 64)], size=56)
    t["mni"] = b.struct("mmu_interval_notifier", size=88)
    t["mn_ptr"] = b.ref(B.PTR, t["mn"])
    t["const_range"] = b.ref(B.CONST, t["range"])
    t["range_ptr"] = b.ref(B.PTR, t["const_range"])
    t["mni_ptr"] = b.ref(B.PTR, t["mni"])
    t["bool"] = b.ref(B.TYPEDEF, t["_Bool"], "bool")
    t["start_proto"] = b.func_proto(t["int"], [("mn", t["mn_ptr"]), ("range", t["range_ptr"])])
    t["start"] = b.func("kvm_mmu_notifier_invalidate_range_start", t["start_proto"])
    t["end_proto"] = b.func_proto(0, [("mn", t["mn_ptr"]), ("range", t["range_ptr"])])
    t["end"] = b.func("kvm_mmu_notifier_invalidate_range_end", t["end_proto"])
    t["interval_proto"] = b.func_proto(t["bool"], [("sub", t["mni_ptr"]), ("range", t["range_ptr"]),
                                                   ("cur_seq", t["ulong"])])
    t["interval"] = b.func("hmm_test_invalidate", t["interval_proto"], linkage=0)   # static
    return b, t


def test_header_layout_is_24_bytes():
    assert HDR.size == 24


def test_functions_of_a_blob():
    b, t = vmlinux_like()
    btf = BTF(b.data())
    assert list(btf.functions()) == [
        ("kvm_mmu_notifier_invalidate_range_start", t["start_proto"]),
        ("kvm_mmu_notifier_invalidate_range_end", t["end_proto"]),
        ("hmm_test_invalidate", t["interval_proto"]),
    ]
    assert btf.next_id == 18 == t["interval"] + 1


@pytest.mark.parametrize("proto, expected", [
    ("start_proto", ("int", ["struct mmu_notifier *", "struct mmu_notifier_range *"])),      # const stripped
    ("end_proto", ("void", ["struct mmu_notifier *", "struct mmu_notifier_range *"])),
    ("interval_proto", ("_Bool", ["struct mmu_interval_notifier *", "struct mmu_notifier_range *",
                                  "long unsigned int"])),                                     # typedef bool
])
def test_prototype(proto, expected):
    b, t = vmlinux_like()
    assert BTF(b.data()).prototype(t[proto]) == expected


@pytest.mark.parametrize("name, expected", [
    ("int", "int"), ("_Bool", "_Bool"), ("bool", "_Bool"), ("mn", "struct mmu_notifier"),
    ("mn_ptr", "struct mmu_notifier *"), ("const_range", "struct mmu_notifier_range"),
    ("range_ptr", "struct mmu_notifier_range *"), ("ulong", "long unsigned int"),
])
def test_describe(name, expected):
    b, t = vmlinux_like()
    assert BTF(b.data()).describe(t[name]) == expected


def test_describe_void_and_other_kinds():
    b = Blob()
    i = b.int("int", 4, 32, 1)
    u = b.struct("u", [("a", i, 0)], size=4, kind=B.UNION)
    e = b.add(B.ENUM, "mmu_notifier_event", 2, 4, struct.pack("<iI", 0, 0) + struct.pack("<iI", 0, 1))
    e64 = b.add(B.ENUM64, "big", 1, 8, struct.pack("<III", 0, 1, 0))
    fwd = b.ref(B.FWD, 0, "mmu_notifier_subscriptions")
    vol = b.ref(B.VOLATILE, i)
    fin = b.struct("mmu_interval_notifier_finish", size=8)
    pp = b.ref(B.PTR, b.ref(B.PTR, fin))
    fl = b.add(B.FLOAT, "double", 0, 8)
    btf = BTF(b.data())
    assert [btf.describe(x) for x in (0, u, e, e64, fwd, vol, pp, fl)] == [
        "void", "union u", "enum mmu_notifier_event", "enum big", "struct mmu_notifier_subscriptions",
        "int", "struct mmu_interval_notifier_finish * *", "double"]


def test_every_kind_is_skipped_by_its_trailer_size():
    """A wrong trailer size for any kind would misread the FUNC that follows."""
    b = Blob()
    i = b.int("int", 4, 32, 1)
    ptr = b.ref(B.PTR, i)
    b.add(B.ARRAY, "", 0, 0, struct.pack("<III", i, i, 16))
    b.struct("s", [("a", i, 0), ("b", i, 32)], size=8, kind_flag=1)      # kind_flag: bitfield offsets
    b.struct("u", [("a", i, 0), ("b", ptr, 0)], size=8, kind=B.UNION)
    b.add(B.ENUM, "e", 2, 4, struct.pack("<iI", b.s("A"), 0) + struct.pack("<iI", b.s("B"), 1))
    b.ref(B.FWD, 0, "f")
    b.ref(B.TYPEDEF, i, "t")
    b.ref(B.VOLATILE, i)
    b.ref(B.CONST, i)
    b.ref(B.RESTRICT, ptr)
    v = b.add(B.VAR, "v", 0, i, struct.pack("<I", 1))
    b.add(B.DATASEC, ".data", 2, 8, struct.pack("<III", v, 0, 4) + struct.pack("<III", v, 4, 4))
    b.add(B.FLOAT, "float", 0, 4)
    b.add(B.DECL_TAG, "tag", 0, i, struct.pack("<i", -1))
    b.ref(B.TYPE_TAG, i, "user")
    b.add(B.ENUM64, "e64", 2, 8, struct.pack("<III", b.s("C"), 0, 1) + struct.pack("<III", b.s("D"), 1, 0))
    proto = b.func_proto(i, [("a", ptr), ("b", i), ("c", i)])
    f = b.func("after_every_kind", proto)
    btf = BTF(b.data())
    assert [k for k, *_ in btf.types] == [B.INT, B.PTR, B.ARRAY, B.STRUCT, B.UNION, B.ENUM, B.FWD, B.TYPEDEF,
                                         B.VOLATILE, B.CONST, B.RESTRICT, B.VAR, B.DATASEC, B.FLOAT,
                                         B.DECL_TAG, B.TYPE_TAG, B.ENUM64, B.FUNC_PROTO, B.FUNC]
    assert list(btf.functions()) == [("after_every_kind", proto)]
    assert btf.prototype(proto) == ("int", ["int *", "int", "int"])
    assert btf.next_id == f + 1 == 20


def test_split_btf_continues_ids_and_strings_of_its_base():
    base_blob, t = vmlinux_like()
    base = BTF(base_blob.data())
    mod = Blob(base=base_blob)
    state = mod.struct("nouveau_svmm", size=64)
    state_ptr = mod.ref(B.PTR, state)
    p1 = mod.func_proto(t["int"], [("mn", t["mn_ptr"]), ("range", t["range_ptr"])])
    f1 = mod.func("nouveau_svmm_invalidate_range_start", p1)
    p2 = mod.func_proto(t["bool"], [("sub", t["mni_ptr"]), ("range", t["range_ptr"]), ("seq", t["ulong"])])
    mod.func("nouveau_svm_range_invalidate", p2)
    p3 = mod.func_proto(0, [("svmm", state_ptr)])
    mod.func("nouveau_svmm_fini", p3)
    # The premises: ids after the base's, string offsets past the base's strings.
    assert state == base.next_id == 18
    assert mod.offsets["nouveau_svmm"] == len(base_blob.strings)

    split = BTF(mod.data(), base=base)
    assert split.next_id == base.next_id + 8
    assert list(split.functions()) == [("nouveau_svmm_invalidate_range_start", p1),
                                       ("nouveau_svm_range_invalidate", p2), ("nouveau_svmm_fini", p3)]
    assert split.prototype(p1) == ("int", ["struct mmu_notifier *", "struct mmu_notifier_range *"])
    assert split.prototype(p2) == ("_Bool", ["struct mmu_interval_notifier *", "struct mmu_notifier_range *",
                                             "long unsigned int"])
    assert split.prototype(p3) == ("void", ["struct nouveau_svmm *"])
    assert split.type(f1)[:2] == (B.FUNC, "nouveau_svmm_invalidate_range_start")
    assert split.type(t["mn"])[:2] == (B.STRUCT, "mmu_notifier")         # from the base
    assert split.name(base_blob.offsets["mmu_notifier_range"]) == "mmu_notifier_range"


def test_bad_magic():
    b, _ = vmlinux_like()
    with pytest.raises(BTFError, match="bad magic 0x9feb"):
        BTF(b.data(magic=0x9FEB))


def test_too_short():
    with pytest.raises(BTFError, match="too short"):
        BTF(b"\x9f\xeb\x01\x00")


@pytest.mark.parametrize("kind", [0, 20, 31])
def test_unknown_kind(kind):
    b = Blob()
    b.int("int", 4, 32, 1)
    b.add(kind, "x", 0, 0)
    with pytest.raises(BTFError, match=f"unknown kind {kind} at type 2"):
        BTF(b.data())


def test_prototype_of_something_else():
    b, t = vmlinux_like()
    with pytest.raises(BTFError, match=f"type {t['start']} is not a FUNC_PROTO"):
        BTF(b.data()).prototype(t["start"])


VMLINUX = Path("/sys/kernel/btf/vmlinux")


def test_this_machines_vmlinux_btf():
    if not VMLINUX.exists():
        pytest.skip(f"{VMLINUX} does not exist on this machine")
    base = BTF(VMLINUX.read_bytes())
    name = "kvm_mmu_notifier_invalidate_range_start"
    btf, module = base, "vmlinux"
    if name not in dict(base.functions()):
        kvm = VMLINUX.parent / "kvm"           # KVM built as a module
        if not kvm.exists():
            pytest.skip(f"{name} is in neither vmlinux's BTF nor a kvm module's (KVM not built)")
        btf, module = BTF(kvm.read_bytes(), base=base), "kvm"
        if name not in dict(btf.functions()):
            pytest.skip(f"{name} is not in this kernel's BTF")
    found = {cb.symbol: cb.kind for cb in callbacks_in(btf, module)}
    assert found[name] == LIST
    assert found.get("kvm_mmu_notifier_invalidate_range_end") in (None, LIST_END)
