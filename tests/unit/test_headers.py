"""Another kernel's split headers merged into one tree bcc can use (BCC_KERNEL_SOURCE)."""
import os

import pytest

from monitor.kernel.headers import HeadersError, merge_tree, usable_headers

REL = "6.1.0-56"


def touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def debian_headers(root, kconfig=True):
    """/usr/src/linux-headers-X-{amd64,common} and /lib/modules/X-amd64/{build,source}, as Debian ships them."""
    arch = root / f"usr/src/linux-headers-{REL}-amd64"
    common = root / f"usr/src/linux-headers-{REL}-common"
    touch(arch / "Makefile", "include common Makefile\n")
    touch(arch / ".config", "CONFIG_MMU_NOTIFIER=y\n")
    touch(arch / "include/generated/autoconf.h")
    touch(arch / "include/config/auto.conf")
    touch(arch / "arch/x86/include/generated/asm/orc_hash.h")
    touch(arch / "arch/x86/module.lds")
    touch(common / "Makefile", "VERSION = 6\n")
    touch(common / "include/linux/mmu_notifier.h")
    if kconfig:
        touch(common / "include/linux/kconfig.h")
    touch(common / "arch/x86/include/asm/ptrace.h")
    touch(common / "arch/x86/Makefile")
    touch(root / "usr/lib/linux-kbuild-6.1/scripts/Makefile.build", "kbuild\n")
    for top in (arch, common):
        os.symlink("../../lib/linux-kbuild-6.1/scripts", top / "scripts")
    mods = root / f"lib/modules/{REL}-amd64"
    mods.mkdir(parents=True)
    os.symlink(arch, mods / "build")
    os.symlink(common, mods / "source")
    return arch, common, mods


MERGED = [
    ("Makefile", "include common Makefile\n"),             # the first directory wins
    (".config", "CONFIG_MMU_NOTIFIER=y\n"),
    ("include/generated/autoconf.h", ""),
    ("include/config/auto.conf", ""),
    ("include/linux/kconfig.h", ""),
    ("include/linux/mmu_notifier.h", ""),
    ("arch/x86/include/generated/asm/orc_hash.h", ""),
    ("arch/x86/include/asm/ptrace.h", ""),
    ("arch/x86/module.lds", ""),
    ("arch/x86/Makefile", ""),
]


@pytest.mark.parametrize("path, text", MERGED)
def test_merge_tree_has_both_halves(tmp_path, path, text):
    arch, common, _ = debian_headers(tmp_path)
    merge_tree([arch, common], tmp_path / "merged")
    assert (tmp_path / "merged" / path).read_text() == text


def test_merge_tree_links_what_only_one_side_has_and_merges_the_rest(tmp_path):
    arch, common, _ = debian_headers(tmp_path)
    dest = tmp_path / "merged"
    merge_tree([arch, common], dest)
    real_dirs = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_dir() and not p.is_symlink()
                       and not p.is_relative_to(dest / "scripts"))
    assert real_dirs == ["arch", "arch/x86", "arch/x86/include", "include"]
    assert (dest / "scripts/Makefile.build").read_text() == "kbuild\n"     # both halves link to kbuild's
    assert os.readlink(dest / "include/linux") == str(common / "include/linux")
    assert os.readlink(dest / "include/generated") == str(arch / "include/generated")
    assert os.readlink(dest / "arch/x86/include/asm") == str(common / "arch/x86/include/asm")
    assert os.readlink(dest / "Makefile") == str(arch / "Makefile")


def test_merge_tree_twice_is_harmless(tmp_path):
    arch, common, _ = debian_headers(tmp_path)
    merge_tree([arch, common], tmp_path / "merged")
    merge_tree([arch, common], tmp_path / "merged")
    assert (tmp_path / "merged/include/linux/kconfig.h").exists()


@pytest.mark.parametrize("given", ["amd64", "build"])
def test_usable_headers_of_debian_split_headers(tmp_path, given):
    arch, common, mods = debian_headers(tmp_path)
    run = tmp_path / "run"
    merged = usable_headers(arch if given == "amd64" else mods / "build", run_dir=run)
    assert merged == run / f"headers/linux-headers-{REL}-amd64"
    for path, text in MERGED:
        assert (merged / path).read_text() == text


def test_usable_headers_of_a_build_link_beside_a_source_link(tmp_path):
    # `make O=obj modules_install`: build -> the output tree, source -> the source tree (any names).
    obj, src = tmp_path / "obj", tmp_path / "linux"
    touch(obj / "include/generated/autoconf.h")
    touch(obj / "Makefile", "obj\n")
    touch(src / "include/linux/kconfig.h")
    touch(src / "Makefile", "src\n")
    mods = tmp_path / "lib/modules/6.18.0"
    mods.mkdir(parents=True)
    os.symlink(obj, mods / "build")
    os.symlink(src, mods / "source")
    merged = usable_headers(mods / "build", run_dir=tmp_path / "run")
    assert merged == tmp_path / "run/headers/obj"
    assert (merged / "include/linux/kconfig.h").exists()
    assert (merged / "include/generated/autoconf.h").exists()
    assert (merged / "Makefile").read_text() == "obj\n"


def test_usable_headers_of_one_complete_tree_is_that_tree(tmp_path):
    tree = tmp_path / "usr/src/kernels/6.18.0"
    touch(tree / "include/linux/kconfig.h")
    run = tmp_path / "run"
    assert usable_headers(tree, run_dir=run) == tree
    assert not run.exists()


def test_usable_headers_without_kconfig_h(tmp_path):
    arch, _common, _ = debian_headers(tmp_path, kconfig=False)
    with pytest.raises(HeadersError, match=f"{arch}: no include/linux/kconfig.h"):
        usable_headers(arch, run_dir=tmp_path / "run")


def test_usable_headers_of_the_arch_half_alone(tmp_path):
    # linux-headers-X-amd64 without its -common sibling installed
    arch = tmp_path / f"usr/src/linux-headers-{REL}-amd64"
    touch(arch / "include/generated/autoconf.h")
    with pytest.raises(HeadersError, match="incomplete kernel headers"):
        usable_headers(arch, run_dir=tmp_path / "run")
