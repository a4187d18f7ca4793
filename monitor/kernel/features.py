"""Kernel features probed, not inferred from the version: a distribution's backport can
give an older kernel a feature (or a custom build leave one out). As libbpf-tools does,
ask the kernel itself; None where it cannot be asked (no privileges), and the plan then
falls back to the version that introduced the feature.
"""
import ctypes
import errno
import os
import platform
from pathlib import Path

# bpf(2): syscall numbers per architecture, the map-create command, the ring buffer's map type.
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_CREATE = 0
BPF_MAP_TYPE_RINGBUF = 27           # 5.8 (457f44363a88)


class _MapCreate(ctypes.Structure):
    # The head of union bpf_attr for BPF_MAP_CREATE; the kernel takes the rest as zero.
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("pad", ctypes.c_uint8 * 108)]


def _create_map(map_type, key_size, value_size, max_entries):
    """(fd or -1, errno) of a bpf(BPF_MAP_CREATE)."""
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        return -1, errno.ENOSYS
    libc = ctypes.CDLL(None, use_errno=True)
    attr = _MapCreate(map_type, key_size, value_size, max_entries)
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_MAP_CREATE), ctypes.byref(attr),
                      ctypes.c_uint(ctypes.sizeof(attr)))
    return fd, ctypes.get_errno()


def ring_buffer(create=_create_map):
    """Whether the kernel has BPF ring buffers: create one (libbpf-tools' bpf_buffer__new
    does the same). None when the kernel refused us rather than the map type."""
    fd, err = create(BPF_MAP_TYPE_RINGBUF, 0, 0, os.sysconf("SC_PAGE_SIZE"))
    if fd >= 0:
        os.close(fd)
        return True
    # EINVAL: a map type this kernel does not know. Anything else (EPERM without
    # privileges, ENOMEM under a memlock limit) says nothing of the map type.
    return False if err == errno.EINVAL else None


def module_btf(btf_dir=Path("/sys/kernel/btf"), proc_modules=Path("/proc/modules")):
    """True where a loaded module carries BTF (/sys/kernel/btf/<module>, 5.11+ with
    CONFIG_DEBUG_INFO_BTF_MODULES); else None, not False: the modules loaded may all be
    out-of-tree builds without BTF on a kernel that gives it to its own."""
    try:
        modules = {line.split()[0] for line in proc_modules.read_text().splitlines() if line.split()}
        have = set(os.listdir(btf_dir)) if btf_dir.is_dir() else set()
    except OSError:
        return None
    return True if modules & have else None
