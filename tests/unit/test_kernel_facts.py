"""Pure parts of monitor.kernel.facts: release strings, tracepoint formats, finding headers."""
import os
from pathlib import Path

import pytest

from monitor.kernel import facts as kernel
from monitor.kernel.facts import find_headers, parse_tracepoint_format, parse_version


@pytest.mark.parametrize("release, version", [
    ("6.1.0-56-amd64", (6, 1, 0)),
    ("4.19.0", (4, 19, 0)),
    ("4.19.0-27-amd64", (4, 19, 0)),
    ("6.18.44-fc-v657", (6, 18, 44)),
    ("5.15.0-1051-azure", (5, 15, 0)),
    ("6.6.30+rpt-rpi-v8", (6, 6, 30)),
    ("7.1", (7, 1, 0)),
    ("5.4", (5, 4, 0)),
    ("6.10.0-rc3", (6, 10, 0)),
    ("5.14.0-427.13.1.el9_4.x86_64", (5, 14, 0)),
])
def test_parse_version(release, version):
    assert parse_version(release) == version


@pytest.mark.parametrize("release", ["garbage", "", "v6.1", "6", "linux-6.1.0"])
def test_parse_version_rejects(release):
    with pytest.raises(ValueError, match="cannot read a kernel version"):
        parse_version(release)


MARK_VICTIM_6_1 = """\
name: mark_victim
ID: 470
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: "pid=%d", REC->pid
"""

MARK_VICTIM_6_9 = """\
name: mark_victim
ID: 609
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long file_rss;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long shmem_rss;\toffset:40;\tsize:8;\tsigned:0;
\tfield:uid_t uid;\toffset:48;\tsize:4;\tsigned:0;
\tfield:unsigned long pgtables;\toffset:56;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:64;\tsize:2;\tsigned:1;

print fmt: "pid=%d comm=%s total-vm=%lukB anon-rss=%lukB file-rss:%lukB shmem-rss:%lukB uid=%u \
pgtables=%lukB oom_score_adj=%hd", REC->pid, __get_str(comm), REC->total_vm, REC->anon_rss, REC->file_rss, \
REC->shmem_rss, REC->uid, REC->pgtables, REC->oom_score_adj
"""

COMMON = {"common_type": 0, "common_flags": 2, "common_preempt_count": 3, "common_pid": 4}


def test_parse_tracepoint_format_6_1():
    assert parse_tracepoint_format(MARK_VICTIM_6_1) == {**COMMON, "pid": 8}


def test_parse_tracepoint_format_6_9():
    assert parse_tracepoint_format(MARK_VICTIM_6_9) == {
        **COMMON, "pid": 8, "comm": 12, "total_vm": 16, "anon_rss": 24, "file_rss": 32, "shmem_rss": 40,
        "uid": 48, "pgtables": 56, "oom_score_adj": 64}


def test_parse_tracepoint_format_arrays_and_pointers():
    text = ("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"
            "\tfield:const char * name;\toffset:24;\tsize:8;\tsigned:0;\n"
            "\tfield:u8 buf[TASK_COMM_LEN];\toffset:32;\tsize:16;\tsigned:0;\n"
            "\tfield:__rel_loc u8[] data;\toffset:48;\tsize:4;\tsigned:0;\n")
    assert parse_tracepoint_format(text) == {"comm": 8, "name": 24, "buf": 32, "data": 48}


def test_parse_tracepoint_format_of_nothing():
    assert parse_tracepoint_format("") == {}


@pytest.fixture
def no_kheaders(monkeypatch):
    """find_headers also looks at /sys/kernel/kheaders.tar.xz: make this machine's answer 'absent'
    (or 'present') whatever it really is."""
    real_exists = Path.exists
    state = {"present": False}

    def exists(self, *a, **k):
        if str(self) == "/sys/kernel/kheaders.tar.xz":
            return state["present"]
        return real_exists(self, *a, **k)
    monkeypatch.setattr(kernel.Path, "exists", exists)
    return state


def modules_dir(root, *releases, dangling=()):
    mods = root / "lib/modules"
    for rel in releases:
        (root / f"usr/src/linux-headers-{rel}").mkdir(parents=True)
        (mods / rel).mkdir(parents=True)
        os.symlink(root / f"usr/src/linux-headers-{rel}", mods / rel / "build")
    for rel in dangling:          # linux-image installed, its headers not
        (mods / rel).mkdir(parents=True)
        os.symlink(root / f"usr/src/linux-headers-{rel}", mods / rel / "build")
    return mods


def test_find_headers_matching(tmp_path, no_kheaders):
    mods = modules_dir(tmp_path, "6.1.0-56-amd64", "6.1.0-9-amd64")
    assert find_headers("6.1.0-56-amd64", modules=mods, env={}) == \
        ("matching", str(mods / "6.1.0-56-amd64/build"))


def test_find_headers_of_another_kernel(tmp_path, no_kheaders):
    mods = modules_dir(tmp_path, "6.1.0-55-amd64", "6.1.0-56-amd64", dangling=("6.18.44-fc-v657",))
    assert find_headers("6.18.44-fc-v657", modules=mods, env={}) == \
        ("other", str(mods / "6.1.0-56-amd64/build"))


def test_find_headers_none(tmp_path, no_kheaders):
    mods = modules_dir(tmp_path, dangling=("6.18.44-fc-v657",))
    assert find_headers("6.18.44-fc-v657", modules=mods, env={}) == ("none", "")
    assert find_headers("6.18.44-fc-v657", modules=tmp_path / "nowhere", env={}) == ("none", "")


def test_find_headers_kheaders(tmp_path, no_kheaders):
    no_kheaders["present"] = True
    mods = modules_dir(tmp_path, "6.1.0-56-amd64")
    assert find_headers("6.18.44-fc-v657", modules=mods, env={}) == ("matching", "/sys/kernel/kheaders.tar.xz")


@pytest.mark.parametrize("release, state", [("6.1.0-56-amd64", "matching"), ("6.18.44-fc-v657", "other")])
def test_find_headers_bcc_kernel_source(tmp_path, no_kheaders, release, state):
    mods = modules_dir(tmp_path, "6.1.0-56-amd64", "6.18.44-fc-v657")
    src = tmp_path / "usr/src/linux-headers-6.1.0-56-amd64"
    link = tmp_path / "headers"           # the variable may name a link: its target says which kernel
    os.symlink(src, link)
    env = {"BCC_KERNEL_SOURCE": str(link)}
    assert find_headers(release, modules=mods, env=env) == (state, str(link))


def test_find_headers_empty_bcc_kernel_source_is_ignored(tmp_path, no_kheaders):
    mods = modules_dir(tmp_path, "6.1.0-56-amd64")
    assert find_headers("6.1.0-56-amd64", modules=mods, env={"BCC_KERNEL_SOURCE": ""}) == \
        ("matching", str(mods / "6.1.0-56-amd64/build"))
