"""monitor.attach.module_fentry without a kernel: the bpf(2) calls it makes, on a fake syscall,
and the function's id in a module's split BTF (blobs from test_btf)."""
import ctypes
import errno
import os

import pytest

from monitor.attach import module_fentry as M
from monitor.kernel.btf import BTF
from tests.unit.test_btf import Blob


def write_btfs(tmp_path):
    """vmlinux and a 'kvm' module BTF over it; the id kvm_start gets."""
    base = Blob()
    i = base.int("int", 4, 32, encoding=1)
    base.func("vmlinux_fn", base.func_proto(i, []))
    mod = Blob(base)
    proto = mod.func_proto(i, [("range", i)])
    mod.func("kvm_other", proto)
    kvm_start = mod.func("kvm_start", proto)
    (tmp_path / "vmlinux").write_bytes(base.data())
    (tmp_path / "kvm").write_bytes(mod.data())
    return kvm_start


def test_function_ids_count_from_where_the_base_ends(tmp_path):
    kvm_start = write_btfs(tmp_path)
    base = BTF((tmp_path / "vmlinux").read_bytes())
    mod = BTF((tmp_path / "kvm").read_bytes(), base=base)
    assert kvm_start > base.next_id - 1
    assert M.functions(mod, "kvm_start")["kvm_start"][0] == kvm_start
    assert "vmlinux_fn" not in M.functions(mod)       # the base's, not the module's
    assert M.functions(mod, "nothing") == {}


def test_attr_layouts_match_the_uapi():
    # include/uapi/linux/bpf.h offsets, 6.1
    assert M.ProgLoadAttr.expected_attach_type.offset == 68
    assert M.ProgLoadAttr.attach_btf_id.offset == 108
    assert M.ProgLoadAttr.attach_btf_obj_fd.offset == 112
    assert M.BtfInfo.name.offset == 16 and M.BtfInfo.kernel_btf.offset == 28


class FakeKernel:
    """bpf(2) for BTF objects {id: name} and program loads; records what it was asked."""

    def __init__(self, objects, load_error=0, verifier_log=b""):
        self.objects, self.load_error, self.verifier_log = objects, load_error, verifier_log
        self.fd_name, self.loads, self.opened = {}, [], []

    def _fd(self):
        fd = os.open(os.devnull, os.O_RDONLY)
        self.opened.append(fd)
        return fd

    def __call__(self, cmd, attr):
        if cmd == M.BPF_BTF_GET_NEXT_ID:
            later = sorted(i for i in self.objects if i > attr.id)
            if not later:
                return -errno.ENOENT
            attr.next_id = later[0]
            return 0
        if cmd == M.BPF_BTF_GET_FD_BY_ID:
            fd = self._fd()
            self.fd_name[fd] = self.objects[attr.id]
            return fd
        if cmd == M.BPF_OBJ_GET_INFO_BY_FD:
            info = M.BtfInfo.from_address(attr.info)
            name = self.fd_name[attr.bpf_fd].encode() + b"\0"
            ctypes.memmove(info.name, name, len(name))
            info.kernel_btf = 1
            return 0
        if cmd == M.BPF_PROG_LOAD:
            self.loads.append((attr.prog_type, attr.expected_attach_type, attr.attach_btf_id,
                               self.fd_name.get(attr.attach_btf_obj_fd), attr.insn_cnt,
                               ctypes.string_at(attr.license), attr.prog_name))
            assert bool(attr.log_buf) == bool(attr.log_level) == bool(attr.log_size)
            if self.load_error:
                if attr.log_buf:
                    ctypes.memmove(attr.log_buf, self.verifier_log + b"\0", len(self.verifier_log) + 1)
                return -self.load_error
            return self._fd()
        if cmd == M.BPF_RAW_TRACEPOINT_OPEN:
            assert attr.name == 0
            return self._fd()
        raise AssertionError(f"unexpected bpf command {cmd}")


class FakeBPF:
    def dump_func(self, name):
        return b"\x00" * 16        # two instructions


@pytest.fixture
def no_bcc(monkeypatch):
    monkeypatch.setattr(M, "_license", lambda bpf: b"GPL")


def test_attach_loads_against_the_modules_btf_object(tmp_path, no_bcc):
    kvm_start = write_btfs(tmp_path)
    kernel = FakeKernel({1: "vmlinux", 7: "kvm_amd", 9: "kvm"})
    mf = M.ModuleFentry(sys_bpf=kernel, btf_dir=tmp_path)
    mf.attach(FakeBPF(), "kvm_start_entry", "kvm", "kvm_start")
    mf.attach(FakeBPF(), "kvm_start_return", "kvm", "kvm_start", ret=True)
    assert kernel.loads == [
        (M.BPF_PROG_TYPE_TRACING, M.BPF_TRACE_FENTRY, kvm_start, "kvm", 2, b"GPL", b"kvm_start_entry"),
        # the kernel keeps 15 characters of a program's name
        (M.BPF_PROG_TYPE_TRACING, M.BPF_TRACE_FEXIT, kvm_start, "kvm", 2, b"GPL", b"kvm_start_retur"),
    ]
    assert len(mf.fds) == 4          # a program and its link, twice
    mf.close()
    assert mf.fds == []
    # Everything opened is closed: BTF objects right after loading, programs and links by close().
    for fd in kernel.opened:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_errors_name_the_function_and_the_reason(tmp_path, no_bcc):
    write_btfs(tmp_path)
    mf = M.ModuleFentry(sys_bpf=FakeKernel({1: "vmlinux"}), btf_dir=tmp_path)
    with pytest.raises(M.ModuleFentryError, match=r"^kvm: the kernel lists no BTF object of that name$"):
        mf.attach(FakeBPF(), "p", "kvm", "kvm_start")
    with pytest.raises(M.ModuleFentryError, match=r"^kvm:nope: no such function in the module's BTF$"):
        mf.attach(FakeBPF(), "p", "kvm", "nope")
    with pytest.raises(M.ModuleFentryError, match=r"^gone:kvm_start: no BTF .*module not loaded"):
        mf.attach(FakeBPF(), "p", "gone", "kvm_start")
    kernel = FakeKernel({9: "kvm"}, load_error=errno.EACCES, verifier_log=b"0: (b7) r0 = 0\ninvalid access\n")
    mf = M.ModuleFentry(sys_bpf=kernel, btf_dir=tmp_path)
    with pytest.raises(M.ModuleFentryError,
                       match=r"^fexit kvm:kvm_start: loading: Permission denied: invalid access$"):
        mf.attach(FakeBPF(), "p", "kvm", "kvm_start", ret=True)
    assert mf.fds == []
    assert len(kernel.loads) == 2       # without the verifier's log, then with it to say why


def ld_imm64(reg, value):
    """BPF_LD_IMM64 reg, value: two instruction slots."""
    import struct
    return struct.pack("<BBhI", 0x18, reg, 0, value & 0xFFFFFFFF) + struct.pack("<BBhI", 0, 0, 0, value >> 32)


def test_patch_imm64_rewrites_every_load_of_the_constant_and_nothing_else():
    exit_insn = bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    old, new = 0x6d6e6d6f6e2d6970, 0xffffffffc0a01230
    # the low half of old as a plain 32-bit immediate (mov r1, imm) is not a 64-bit load
    mov = bytes([0xb7, 1, 0, 0]) + (old & 0xFFFFFFFF).to_bytes(4, "little")
    code = ld_imm64(1, old) + mov + ld_imm64(2, old) + ld_imm64(3, old + 1) + exit_insn
    got, n = M.patch_imm64(code, old, new)
    assert n == 2
    assert got == ld_imm64(1, new) + mov + ld_imm64(2, new) + ld_imm64(3, old + 1) + exit_insn


class PatchingBPF:
    def dump_func(self, name):
        return ld_imm64(1, 0x6d6e6d6f6e2d6970) + bytes([0x95, 0, 0, 0, 0, 0, 0, 0])


def test_attach_patches_the_loaded_copy_and_detach_closes_one_attachment(tmp_path, no_bcc, monkeypatch):
    write_btfs(tmp_path)
    kernel = FakeKernel({9: "kvm"})
    loaded = []
    real_load = M.ModuleFentry.load
    monkeypatch.setattr(M.ModuleFentry, "load",
                        lambda self, insns, *a: loaded.append(bytes(insns)) or real_load(self, insns, *a))
    mf = M.ModuleFentry(sys_bpf=kernel, btf_dir=tmp_path)
    a = mf.attach(PatchingBPF(), "p", "kvm", "kvm_start", patch={0x6d6e6d6f6e2d6970: 0xa000})
    b = mf.attach(PatchingBPF(), "p", "kvm", "kvm_other", patch={0x6d6e6d6f6e2d6970: 0xb000})
    assert loaded[0][:16] == ld_imm64(1, 0xa000) and loaded[1][:16] == ld_imm64(1, 0xb000)
    assert mf.function("kvm", "kvm_start")[1] == 1          # one argument in write_btfs' prototype
    mf.detach(a)
    assert len(mf.fds) == 2 and b in mf.fds and a not in mf.fds
    with pytest.raises(M.ModuleFentryError, match=r"^fentry kvm:kvm_start: program p has no constant 0x1 to patch$"):
        mf.attach(PatchingBPF(), "p", "kvm", "kvm_start", patch={1: 2})
    mf.close()
    assert mf.fds == []


def test_suspend_keeps_the_program_and_resume_attaches_it_without_a_load(tmp_path, no_bcc):
    write_btfs(tmp_path)
    kernel = FakeKernel({9: "kvm"})
    mf = M.ModuleFentry(sys_bpf=kernel, btf_dir=tmp_path)
    link = mf.attach(FakeBPF(), "p", "kvm", "kvm_start")
    prog = mf.suspend(link)
    assert mf.fds == [prog] and len(kernel.loads) == 1
    with pytest.raises(OSError):
        os.fstat(link)                   # the link closed: detached
    again = mf.resume(prog)
    assert mf.fds == [prog, again] and len(kernel.loads) == 1
    # a kernel that will not attach it again: unloaded, and said
    prog = mf.suspend(again)
    kernel_open = kernel.__call__
    mf.sys_bpf = lambda cmd, attr: -errno.ENOENT if cmd == M.BPF_RAW_TRACEPOINT_OPEN else kernel_open(cmd, attr)
    with pytest.raises(M.ModuleFentryError, match=r"^p:kvm_start: attaching again: No such file or directory$"):
        mf.resume(prog)
    assert mf.fds == [] and mf.programs == {}
