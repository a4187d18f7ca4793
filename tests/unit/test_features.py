"""monitor.kernel.features: what the kernel is asked, and what its answers mean."""
import errno
import os

from monitor.kernel import features


def test_ring_buffer_is_what_creating_one_says(tmp_path):
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDONLY)
    asked = []

    def create(*a):
        asked.append(a)
        return fd, 0
    assert features.ring_buffer(create) is True
    assert asked[0][:3] == (features.BPF_MAP_TYPE_RINGBUF, 0, 0)
    assert features.ring_buffer(lambda *a: (-1, errno.EINVAL)) is False       # a map type it does not know
    assert features.ring_buffer(lambda *a: (-1, errno.EPERM)) is None         # not allowed to ask
    assert features.ring_buffer(lambda *a: (-1, errno.ENOMEM)) is None        # memlock limit: says nothing


def test_module_btf_is_told_by_the_loaded_modules(tmp_path):
    btf, mods = tmp_path / "btf", tmp_path / "modules"
    btf.mkdir()
    (btf / "vmlinux").write_text("")
    mods.write_text("kvm 1 0 - Live 0x0\nkvm_amd 1 0 - Live 0x0\n")
    # none of them has BTF: maybe out-of-tree builds on a kernel that has it; the version decides
    assert features.module_btf(btf, mods) is None
    (btf / "kvm").write_text("")
    assert features.module_btf(btf, mods) is True
    mods.write_text("")
    assert features.module_btf(btf, mods) is None           # nothing loaded to tell by
    assert features.module_btf(btf, tmp_path / "absent") is None
