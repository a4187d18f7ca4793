"""fentry/fexit on a function of a kernel module, for a program bcc compiled.

bcc 0.26 (Debian 12) loads fentry programs against vmlinux BTF only; a module's
function (kvm_mmu_notifier_invalidate_range_start in kvm.ko) has its BTF id in the
module's split BTF (5.11+). The kernel accepts it when the load names that BTF object:
BPF_PROG_LOAD with prog_type TRACING, expected_attach_type FENTRY or FEXIT,
attach_btf_obj_fd = the module's BTF (BPF_BTF_GET_FD_BY_ID, found by name with
BPF_OBJ_GET_INFO_BY_FD), attach_btf_id = the function's id in it; then
BPF_RAW_TRACEPOINT_OPEN with no name attaches it (5.5+) and returns a link fd.
Closing the link detaches. bcc >= 0.28 does the same (MODULE_KFUNC_PROBE).

    with ModuleFentry() as mf:
        mf.attach(bpf, "count_kvm_start", "kvm", "kvm_mmu_notifier_invalidate_range_start")

The program is a plain function of the bcc source taking the tracing context
(`int count_kvm_start(u64 *ctx)`: ctx[i] is argument i; for fexit the return value
follows the arguments), named without bcc's kfunc__ prefix, which bcc would try to
attach against vmlinux itself. One compiled program serves many functions: attach()
can write a value over a 64-bit constant of the program (patch={placeholder: value}),
e.g. the address of the function it is attached to. A function built into the kernel
(module "vmlinux") is attached the same way, against vmlinux BTF.

While a program is attached to a module's function, the kernel holds a reference on
the module (its BPF trampoline's reference, as 6.1 takes): it cannot be unloaded until detach().
"""
import ctypes
import errno
import os
import struct
from pathlib import Path

from monitor.kernel.btf import BTF, FUNC, FUNC_PROTO, BTFError

BTF_DIR = Path("/sys/kernel/btf")

# include/uapi/linux/bpf.h
BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD, BPF_BTF_GET_FD_BY_ID, BPF_BTF_GET_NEXT_ID = 5, 15, 19, 23
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FENTRY, BPF_TRACE_FEXIT = 24, 25
_SYS_BPF = 321                                  # x86_64; trampolines exist only there (bcc's support_kfunc)
_LOG_SIZE = 1 << 20


class ModuleFentryError(Exception):
    """Cannot attach: the message says which function and why."""


class ProgLoadAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_LOAD, as far as attach_btf_obj_fd (5.11)."""
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32), ("log_buf", ctypes.c_uint64),
                ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32), ("prog_btf_fd", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
                ("func_info_cnt", ctypes.c_uint32), ("line_info_rec_size", ctypes.c_uint32),
                ("line_info", ctypes.c_uint64), ("line_info_cnt", ctypes.c_uint32),
                ("attach_btf_id", ctypes.c_uint32), ("attach_btf_obj_fd", ctypes.c_uint32)]


class IdAttr(ctypes.Structure):
    """union bpf_attr for BPF_BTF_GET_NEXT_ID (start_id, next_id) and _GET_FD_BY_ID (btf_id)."""
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class InfoAttr(ctypes.Structure):
    """union bpf_attr for BPF_OBJ_GET_INFO_BY_FD."""
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class BtfInfo(ctypes.Structure):
    """struct bpf_btf_info (name and kernel_btf: 5.11)."""
    _fields_ = [("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("name", ctypes.c_uint64), ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32)]


class RawTpAttr(ctypes.Structure):
    """union bpf_attr for BPF_RAW_TRACEPOINT_OPEN."""
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32)]


def _libc_bpf(cmd, attr):
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(cmd), ctypes.byref(attr),
                       ctypes.c_uint(ctypes.sizeof(attr)))
    return ret if ret >= 0 else -ctypes.get_errno()


def functions(btf, only=None):
    """{name: (BTF id, number of arguments)} of the FUNCs in btf's own types (only: that one)."""
    out, first = {}, btf.next_id - len(btf.types)
    for i, (kind, name_off, _vlen, proto, _off) in enumerate(btf.types):
        if kind != FUNC:
            continue
        name = btf.name(name_off)
        if only is not None and name != only:
            continue
        pkind, _pname, nargs, _ret, _btf, _poff = btf.type(proto)
        out[name] = (first + i, nargs if pkind == FUNC_PROTO else -1)
    return out


def patch_imm64(insns, old, new):
    """insns (bytes of BPF instructions) with every 64-bit immediate load of old made a load
    of new; and how many there were. A BPF_LD_IMM64 is two 8-byte slots, the low 32 bits in
    the first's imm, the high 32 bits in the second's."""
    code = bytearray(insns)
    lo, hi = struct.pack("<I", old & 0xFFFFFFFF), struct.pack("<I", old >> 32)
    n = 0
    for pos in range(0, len(code) - 15, 8):
        if code[pos] == 0x18 and code[pos + 4:pos + 8] == lo and code[pos + 12:pos + 16] == hi:
            code[pos + 4:pos + 8] = struct.pack("<I", new & 0xFFFFFFFF)
            code[pos + 12:pos + 16] = struct.pack("<I", new >> 32)
            n += 1
    return bytes(code), n


class ModuleFentry:
    """Loaded programs and their links; detach() one, close() them all.

    sys_bpf(cmd, attr) -> fd or -errno, and btf_dir, are there for tests; vmlinux() returns
    the parsed vmlinux BTF (a caller that has it already saves parsing it twice)."""

    def __init__(self, sys_bpf=_libc_bpf, btf_dir=BTF_DIR, vmlinux=None):
        self.sys_bpf = sys_bpf
        self.btf_dir = Path(btf_dir)
        self.fds = []
        self._vmlinux = None
        self._vmlinux_of = vmlinux
        self._functions = {}        # module -> functions() of its BTF
        self._prog = {}             # link fd -> its program's fd
        self.programs = {}          # program fd -> "program:function" (benchmarks read their stats)

    def attach(self, bpf, fn_name, module, function, ret=False, patch=None):
        """Load bcc program fn_name as fentry (fexit if ret) on module's function; its link fd.
        patch: {constant: value} written over the program's 64-bit loads of constant."""
        what = f"{'fexit' if ret else 'fentry'} {module}:{function}"
        type_id, _nargs = self.function(module, function)
        name = fn_name.encode() if isinstance(fn_name, str) else fn_name
        insns = bpf.dump_func(name)
        for old, new in (patch or {}).items():
            insns, n = patch_imm64(insns, old, new)
            if not n:
                raise ModuleFentryError(f"{what}: program {name.decode()} has no constant {old:#x} to patch")
        obj_fd = 0 if module == "vmlinux" else self.btf_fd(module)
        try:
            prog_fd = self.load(insns, _license(bpf), name, obj_fd, type_id, ret, what)
        finally:
            if obj_fd:
                os.close(obj_fd)     # the loaded program holds its own reference
        self.fds.append(prog_fd)
        attr = RawTpAttr(name=0, prog_fd=prog_fd)
        link = self.sys_bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
        if link < 0:
            self.fds.remove(prog_fd)
            os.close(prog_fd)
            raise ModuleFentryError(f"{what}: attaching: {os.strerror(-link)}")
        self.fds.append(link)
        self._prog[link] = prog_fd
        self.programs[prog_fd] = f"{name.decode()}:{function}"
        return link

    def suspend(self, link):
        """Detach what attach() returned link for, keeping its program loaded; its program's
        fd, for resume(). A loaded program holds no module: the trampoline's attach does."""
        prog = self._prog.pop(link)
        self.fds.remove(link)
        os.close(link)
        return prog

    def resume(self, prog):
        """Attach again a program suspend() detached; its new link fd. ModuleFentryError where
        the kernel refuses (5.10 attaches a tracing program once; a module unloaded since),
        the program then unloaded."""
        link = self.sys_bpf(BPF_RAW_TRACEPOINT_OPEN, RawTpAttr(name=0, prog_fd=prog))
        if link < 0:
            what = self.programs.get(prog, prog)
            self.unload(prog)
            raise ModuleFentryError(f"{what}: attaching again: {os.strerror(-link)}")
        self.fds.append(link)
        self._prog[link] = prog
        return link

    def unload(self, prog):
        """Unload a program suspend() left loaded."""
        self.programs.pop(prog, None)
        if prog in self.fds:
            self.fds.remove(prog)
            os.close(prog)

    def detach(self, link):
        """Detach and unload what attach() returned link for."""
        prog = self._prog.pop(link, None)
        self.programs.pop(prog, None)
        for fd in (link, prog):      # the link before its program
            if fd is not None and fd in self.fds:
                self.fds.remove(fd)
                os.close(fd)

    def function(self, module, function):
        """(BTF id, number of arguments) of module's function ("vmlinux": a built-in one)."""
        try:
            if self._vmlinux is None:
                self._vmlinux = (self._vmlinux_of() if self._vmlinux_of else None) or \
                    BTF((self.btf_dir / "vmlinux").read_bytes())
            if module == "vmlinux":      # too many to keep a table of: looked up when asked (rare)
                found = functions(self._vmlinux, function)
            else:
                if module not in self._functions:
                    self._functions[module] = functions(BTF((self.btf_dir / module).read_bytes(),
                                                            base=self._vmlinux))
                found = self._functions[module]
        except FileNotFoundError as e:
            raise ModuleFentryError(f"{module}:{function}: no BTF ({e.filename}): module not loaded, "
                                    "built without BTF, or a kernel before 5.11") from None
        except BTFError as e:
            raise ModuleFentryError(f"{module}:{function}: BTF: {e}") from None
        if function not in found:
            raise ModuleFentryError(f"{module}:{function}: no such function in the module's BTF")
        return found[function]

    def forget(self, module):
        """module was unloaded: a new load has new BTF."""
        self._functions.pop(module, None)

    def btf_fd(self, module):
        """An fd of the kernel's BTF object named module (the caller closes it)."""
        attr = IdAttr(id=0)
        while True:
            rc = self.sys_bpf(BPF_BTF_GET_NEXT_ID, attr)
            if rc == -errno.ENOENT:
                raise ModuleFentryError(f"{module}: the kernel lists no BTF object of that name")
            if rc < 0:
                raise ModuleFentryError(f"{module}: listing BTF objects: {os.strerror(-rc)}")
            attr = IdAttr(id=attr.next_id)
            fd = self.sys_bpf(BPF_BTF_GET_FD_BY_ID, IdAttr(id=attr.id))
            if fd == -errno.ENOENT:          # unloaded since listed
                continue
            if fd < 0:
                raise ModuleFentryError(f"{module}: opening BTF object {attr.id}: {os.strerror(-fd)}")
            if self._btf_name(fd) == module:
                return fd
            os.close(fd)

    def _btf_name(self, fd):
        name = ctypes.create_string_buffer(64)
        info = BtfInfo(name=ctypes.addressof(name), name_len=len(name))
        rc = self.sys_bpf(BPF_OBJ_GET_INFO_BY_FD,
                          InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)))
        return name.value.decode() if rc == 0 and info.kernel_btf else None

    def load(self, insns, license, name, obj_fd, type_id, ret, what):
        """BPF_PROG_LOAD of insns (bytes) named name (bytes) as a tracing program on
        (obj_fd, type_id); its fd. Loaded without the verifier's log, which costs the
        verifier's time and a 1 MB buffer per callback; asked for again with it only to say
        why a load failed."""
        code = ctypes.create_string_buffer(bytes(insns), len(insns))
        lic = ctypes.create_string_buffer(license)

        def attempt(log=None):
            attr = ProgLoadAttr(prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=len(insns) // 8,
                                insns=ctypes.addressof(code), license=ctypes.addressof(lic),
                                log_level=1 if log else 0, log_size=len(log) if log else 0,
                                log_buf=ctypes.addressof(log) if log else 0,
                                prog_name=name[:15],
                                expected_attach_type=BPF_TRACE_FEXIT if ret else BPF_TRACE_FENTRY,
                                attach_btf_id=type_id, attach_btf_obj_fd=obj_fd)
            return self.sys_bpf(BPF_PROG_LOAD, attr)
        fd = attempt()
        if fd < 0:
            log = ctypes.create_string_buffer(_LOG_SIZE)
            again = attempt(log)
            if again >= 0:          # passed the second time (a transient refusal): keep it
                return again
            last = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise ModuleFentryError(f"{what}: loading: {os.strerror(-fd)}" + (f": {last[0]}" if last[0] else ""))
        return fd

    def close(self):
        for fd in reversed(self.fds):        # links before their programs
            os.close(fd)
        self.fds = []
        self._prog = {}
        self.programs = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _license(bpf):
    from bcc import lib        # the license the source declares (GPL for tracing helpers), as bcc loads it
    return lib.bpf_module_license(bpf.module)
