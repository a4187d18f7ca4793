"""Naming the cgroup of an OOM victim: id -> path on the cgroup2 mount only (v1, hybrid and v2
layouts as fixture trees)."""
import logging
import os
from types import SimpleNamespace

import pytest

from monitor.read import cgroups
from monitor.read.cgroups import UNKNOWN, CgroupNames, unified_mount

ROOTFS = "22 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/root rw\n"
TMPFS = "25 22 0:22 / {root} ro,nosuid,nodev,noexec shared:3 - tmpfs tmpfs ro,mode=755\n"
V1 = ("26 25 0:23 / {root}/systemd rw,nosuid,nodev,noexec,relatime shared:4 - cgroup cgroup rw,xattr,name=systemd\n"
      "27 25 0:26 / {root}/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,cpu,cpuacct\n"
      "28 25 0:27 / {root}/memory rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,memory\n")
HYBRID = V1 + "29 25 0:24 / {root}/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
V2 = "29 22 0:24 / {root} rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
LAYOUTS = {"v1": TMPFS + V1, "hybrid": TMPFS + HYBRID, "v2": V2}
# Where each layout's cgroup2 tree is, under the fixture root.
UNIFIED = {"v1": None, "hybrid": "unified", "v2": "."}
VICTIM = "system.slice/victim.service"


def layout(tmp_path, kind):
    """A cgroup tree as `kind` mounts it, under a root whose name mountinfo escapes; the same
    cgroup names in every hierarchy. -> (mountinfo path, root)."""
    root = tmp_path / "sys fs"
    tops = ["systemd", "cpu,cpuacct", "memory"] if kind != "v2" else []
    tops += [UNIFIED[kind]] if UNIFIED[kind] else []
    for top in tops:
        (root / top / VICTIM).mkdir(parents=True)
    root.mkdir(exist_ok=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(ROOTFS + LAYOUTS[kind].format(root=escaped(root)))
    return mountinfo, root


def escaped(path):
    return str(path).replace(" ", "\\040")


def kernfs_inodes(monkeypatch, hierarchies):
    """Inodes as the kernel gives them: every hierarchy numbers its directories from 1, so a v1
    directory and a cgroup2 one share numbers."""
    fake, real = {}, cgroups._stat
    for top in hierarchies:
        for n, d in enumerate(sorted([top] + [p for p in top.rglob("*") if p.is_dir()]), start=1):
            fake[str(d)] = n
    monkeypatch.setattr(cgroups, "_stat", lambda p: SimpleNamespace(
        st_ino=fake.get(str(p), real(p).st_ino), st_dev=real(p).st_dev))
    return fake


@pytest.mark.parametrize("kind", ["hybrid", "v2"])
def test_ids_are_inodes_on_the_cgroup2_mount_only(tmp_path, monkeypatch, kind):
    mountinfo, root = layout(tmp_path, kind)
    unified = root / UNIFIED[kind]
    fake = kernfs_inodes(monkeypatch, [root / t for t in ("systemd", "cpu,cpuacct", "memory", "unified")]
                         if kind == "hybrid" else [root])
    names = CgroupNames(mountinfo, root)
    assert names.path(fake[str(unified.resolve())]) == "/"
    assert names.path(fake[str(unified.resolve() / VICTIM)]) == "/" + VICTIM
    if kind == "hybrid":    # the same number on v1 is not looked at: the id is the cgroup2 one's
        assert fake[str(root / "cpu,cpuacct" / VICTIM)] == fake[str(unified / VICTIM)]
        assert names.mount == unified
    assert names.path(999) == UNKNOWN
    assert names.path(0) == UNKNOWN
    assert names.reason is None


def test_v1_directories_are_never_named(tmp_path):
    mountinfo, root = layout(tmp_path, "hybrid")
    names = CgroupNames(mountinfo, root)
    for top in ("systemd", "cpu,cpuacct", "memory"):
        assert names.path(os.stat(root / top / VICTIM).st_ino) == UNKNOWN
    assert names.path(os.stat(root / "unified" / VICTIM).st_ino) == "/" + VICTIM


def test_v1_only_is_unknown_with_the_reason_once(tmp_path, caplog):
    mountinfo, root = layout(tmp_path, "v1")
    names = CgroupNames(mountinfo, root)
    with caplog.at_level(logging.WARNING):
        assert names.path(os.stat(root / "cpu,cpuacct" / VICTIM).st_ino) == UNKNOWN
        assert names.path(1) == UNKNOWN
    assert names.mount is None and "cgroup v1 only" in names.reason
    assert [r.getMessage() for r in caplog.records] == [f"OOM victims' cgroups are labelled unknown: {names.reason}"]


def test_ids_before_5_5_carry_a_generation_above_the_inode(tmp_path):
    mountinfo, root = layout(tmp_path, "v2")
    ino = os.stat(root / VICTIM).st_ino
    assert CgroupNames(mountinfo, root).path((1 << 32) | ino) == "/" + VICTIM


def test_a_cgroup_made_after_the_first_walk_is_found(tmp_path):
    mountinfo, root = layout(tmp_path, "v2")
    names = CgroupNames(mountinfo, root)
    assert names.path(os.stat(root).st_ino) == "/"
    (root / "later").mkdir()
    assert names.path(os.stat(root / "later").st_ino) == "/later"


def test_a_subtree_mount_names_paths_from_the_hierarchy_root(tmp_path):
    mountinfo, root = layout(tmp_path, "v2")
    mountinfo.write_text(f"29 22 0:24 /kubepods.slice {escaped(root)} rw - cgroup2 cgroup2 rw\n")
    assert CgroupNames(mountinfo, root).path(os.stat(root / VICTIM).st_ino) == "/kubepods.slice/" + VICTIM


@pytest.mark.parametrize("top", [".", "unified"])
def test_without_mountinfo_a_cgroup2_root_is_known_by_its_controllers_file(tmp_path, top):
    root = tmp_path / "cgroup"
    (root / top / VICTIM).mkdir(parents=True)
    (root / top / "cgroup.controllers").write_text("memory pids\n")
    names = CgroupNames(tmp_path / "absent", root)
    assert names.path(os.stat(root / top / VICTIM).st_ino) == "/" + VICTIM


def test_without_mountinfo_or_cgroup2_the_reason_says_so(tmp_path):
    (tmp_path / "cpu").mkdir()
    names = CgroupNames(tmp_path / "absent", tmp_path)
    assert names.path(os.stat(tmp_path / "cpu").st_ino) == UNKNOWN
    assert "unreadable" in names.reason


@pytest.mark.parametrize("text, expected", [
    (TMPFS + V1, None),
    (TMPFS + HYBRID, ("{root}/unified", "/")),
    (V2, ("{root}", "/")),
    # a container's own cgroup subtree, then the host's whole hierarchy: the whole one
    ("40 30 0:24 /kubepods.slice/x.scope /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
     "41 30 0:24 / /host/cgroup ro - cgroup2 cgroup2 rw\n", ("/host/cgroup", "/")),
    ("40 30 0:24 /kubepods.slice /sys/fs/cgroup ro shared:5 master:1 - cgroup2 cgroup2 rw\n",
     ("/sys/fs/cgroup", "/kubepods.slice")),
    ("", None),
    ("garbage\n", None),
])
def test_unified_mount(text, expected):
    assert unified_mount(text.format(root="/sys/fs/cgroup")) == (
        expected and tuple(e.format(root="/sys/fs/cgroup") for e in expected))

