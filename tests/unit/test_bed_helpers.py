"""The real-kernel bed's pure parts: interface numbers, parsers, the boot command line."""
import re
from pathlib import Path

import pytest

from bed import fixture_dev, vm
from bed.evidence import parse_hist_totals

HEADER = Path(__file__).resolve().parents[2] / "bed" / "fixture" / "mnmon_fixture.h"


def _header_defines():
    text = HEADER.read_text()
    return dict(re.findall(r"#define\s+(MNMON_FX_\w+)\s+(\S+)", text)), text


def test_python_mirrors_the_fixture_header():
    defs, text = _header_defines()
    assert int(defs["MNMON_FX_NEVER_FAIL"]) == fixture_dev.NEVER_FAIL
    assert int(defs["MNMON_FX_FAIL_NONBLOCK"]) == fixture_dev.FAIL_NONBLOCK
    assert int(defs["MNMON_FX_SLEEP"]) == fixture_dev.SLEEP
    for name, const in [("ADD_LIST", fixture_dev.ADD_LIST), ("ADD_INTERVAL", fixture_dev.ADD_INTERVAL),
                        ("ADD_TWO_PASS", fixture_dev.ADD_TWO_PASS)]:
        nr = int(re.search(rf"MNMON_FX_{name}\s+_IOW\(MNMON_FX_IOC_MAGIC, (0x\w+)", text).group(1), 16)
        assert const == (1 << 30) | (24 << 16) | (ord("N") << 8) | nr
    nr = int(re.search(r"MNMON_FX_PARK\s+_IO\(MNMON_FX_IOC_MAGIC, (0x\w+)", text).group(1), 16)
    assert fixture_dev.PARK == (ord("N") << 8) | nr
    # struct mnmon_fx_subscribe: u32, u32, u64, u64 with no padding
    assert fixture_dev._SUBSCRIBE.size == 24


STATS = (
    "slot=0 kind=list behaviour=fail_nonblock sleep_us=0 pid=263 comm=python "
    "start_fn=mnmon_fx_list_fail_nonblock_start blockable_ok=12 blockable_fail=0 nonblockable_ok=0 "
    "nonblockable_fail=950 blockable_ends=12 nonblockable_ends=950 hist_log2_ns=0,0,3,950\n"
    "slot=1 kind=interval behaviour=sleep sleep_us=1500 pid=7 comm=a start_fn=mnmon_fx_interval_sleep "
    "blockable_ok=40 blockable_fail=0 nonblockable_ok=0 nonblockable_fail=0 blockable_ends=0 "
    "nonblockable_ends=0 hist_log2_ns=0,40\n"
    "slot=2 kind=two_pass behaviour=never_fail sleep_us=0 pid=9 comm=a "
    "start_fn=mnmon_fx_two_pass_never_fail_start blockable_ok=30 blockable_fail=0 nonblockable_ok=0 "
    "nonblockable_fail=0 blockable_ends=29 nonblockable_ends=0 finish_skipped=1 hist_log2_ns=30\n"
)


def test_parse_stats():
    slots = fixture_dev.parse_stats(STATS)
    b = slots[0]
    assert (b.kind, b.behaviour, b.pid, b.start_fn) == ("list", "fail_nonblock", 263,
                                                        "mnmon_fx_list_fail_nonblock_start")
    assert (b.nonblockable_fail, b.nonblockable_ends, b.calls) == (950, 950, 962)
    assert b.hist_log2_ns == [0, 0, 3, 950]
    assert slots[1].sleep_us == 1500 and slots[1].hist_log2_ns == [0, 40]
    assert slots[1].finish_skipped == 0             # older fixtures print no such field
    assert (slots[2].kind, slots[2].blockable_ends, slots[2].finish_skipped) == ("two_pass", 29, 1)


def test_parse_hist_totals():
    text = "# event histogram\n{ common_pid: 12 } hitcount: 7\n\nTotals:\n    Hits: 207\n    Entries: 2\n    Dropped: 0\n"
    assert parse_hist_totals(text) == (207, 0)
    assert parse_hist_totals("Totals:\n    Hits: 0\n    Entries: 0\n    Dropped: 3\n") == (0, 3)


def test_newest_kernel_orders_versions_numerically(tmp_path):
    for v in ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-10-amd64", "6.12.0-1-amd64"]:
        (tmp_path / v / "build").mkdir(parents=True)
    (tmp_path / "6.13.0-1-amd64").mkdir()          # no headers: not bootable for the bed
    assert vm.newest_kernel(tmp_path) == "6.12.0-1-amd64"


def test_newest_kernel_says_what_to_install(tmp_path):
    with pytest.raises(vm.BedError, match="linux-image-amd64 linux-headers-amd64"):
        vm.newest_kernel(tmp_path)


def test_vng_command_line(monkeypatch):
    monkeypatch.setattr(vm.Path, "exists", lambda self: True)
    monkeypatch.setattr(vm.shutil, "which", lambda *a, **k: "/x/vng")
    argv = vm.vng_argv("6.1.0-56-amd64", ["pytest", "-k", "a b"], env={"X": "1"})
    assert argv[:3] == ["/x/vng", "--run", "/boot/vmlinuz-6.1.0-56-amd64"]
    assert "--disable-kvm" in argv and "--qemu-opts=-cpu max" in argv
    inner = argv[argv.index("--exec") + 1]
    assert "MNMON_GUEST=1" in inner and "X=1" in inner and "'a b'" in inner
    assert inner.index("guest_setup.sh") < inner.index("pytest")
