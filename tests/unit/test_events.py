"""The ring buffer record: RawEvent against struct mnmon_event as gcc lays it out,
decoding, and what `mnmon watch --json` prints for each event type."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from monitor.read.events import Event, RawEvent, decode

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
FIELDS = [name for name, _ in RawEvent._fields_]


def resolve(ip):
    return {0xffffffffc0a11001: ("nouveau_svm_range_invalidate", "nouveau")}.get(ip, ("unknown", "unknown"))


def raw(**fields):
    return RawEvent(**{"ts_ns": 1_000_000_007, **fields})


def test_decode_bytes():
    data = bytes(raw(type=1, ip=0xffffffffc0a11001, duration_ns=2_500_000, pid=4242, tid=4243, result=1,
                     caller=1, kind=1, comm=b"qemu-system-x86"))
    assert len(data) == 104
    assert decode(data + b"\0" * 8) == Event(          # ring buffer records may be padded
        type="notifier_failed", ts_ns=1_000_000_007, pid=4242, tid=4243, comm="qemu-system-x86",
        ip=0xffffffffc0a11001, duration_ns=2_500_000, rss_kb=0, result=1, caller=1, kind=1)


def test_decode_a_pointer():
    r = raw(type=2, pid=77, rss_kb=1_048_576, comm=b"victim")
    for ptr in (ctypes.addressof(r), ctypes.c_void_p(ctypes.addressof(r))):
        e = decode(ptr, ctypes.sizeof(r))
        assert (e.type, e.pid, e.rss_kb, e.comm, e.result) == ("oom_victim", 77, 1_048_576, "victim", 0)


def test_decode_negative_result_and_unknown_type():
    e = decode(bytes(raw(type=9, result=-11)))
    assert (e.type, e.result, e.comm) == ("type9", -11, "")


def test_decode_full_comm():
    e = decode(bytes(raw(type=2, comm=b"0123456789abcdef")))     # 16 bytes, no NUL
    assert e.comm == "0123456789abcdef"


@pytest.mark.parametrize("fields, expected", [
    (dict(type=1, ip=0xffffffffc0a11001, duration_ns=2_500_000, pid=4242, result=1, caller=1, kind=1,
          comm=b"oom_reaper"),
     {"event": "notifier_failed", "ts_ns": 1_000_000_007, "notifier": "nouveau_svm_range_invalidate",
      "module": "nouveau", "kind": "interval", "mode": "nonblockable", "result": "eagain",
      "duration_seconds": 0.0025, "pid": 4242, "comm": "oom_reaper"}),
    (dict(type=1, ip=0xffffffff81000001, duration_ns=1000, pid=1, result=2, caller=0, kind=0, comm=b"a"),
     {"event": "notifier_failed", "ts_ns": 1_000_000_007, "notifier": "unknown", "module": "unknown",
      "kind": "list", "mode": "blockable", "result": "error", "duration_seconds": 1e-06, "pid": 1, "comm": "a"}),
    (dict(type=1, caller=5, kind=7),
     {"event": "notifier_failed", "ts_ns": 1_000_000_007, "notifier": "unknown", "module": "unknown",
      "kind": "?", "mode": "?", "result": "ok", "duration_seconds": 0.0, "pid": 0, "comm": ""}),
    (dict(type=2, pid=77),                                           # mark_victim up to 6.8: pid only
     {"event": "oom_victim", "ts_ns": 1_000_000_007, "pid": 77}),
    (dict(type=2, pid=77, comm=b"stress-ng", rss_kb=524288),         # 6.9+
     {"event": "oom_victim", "ts_ns": 1_000_000_007, "pid": 77, "comm": "stress-ng", "rss_kb": 524288}),
    (dict(type=3, pid=77, result=0, caller=0, duration_ns=3_000_000),
     {"event": "reap_attempt", "ts_ns": 1_000_000_007, "victim_pid": 77, "result": "reaped",
      "caller": "oom_reaper", "duration_seconds": 0.003}),
    (dict(type=3, pid=77, result=1, caller=1, duration_ns=5_000, ip=0xffffffffc0a11001),
     {"event": "reap_attempt", "ts_ns": 1_000_000_007, "victim_pid": 77, "result": "notifier_blocked",
      "caller": "process_mrelease", "duration_seconds": 5e-06, "blocked_by": "nouveau_svm_range_invalidate",
      "blocked_by_module": "nouveau"}),
    (dict(type=3, pid=77, result=1, caller=2, duration_ns=5_000, ip=0),
     {"event": "reap_attempt", "ts_ns": 1_000_000_007, "victim_pid": 77, "result": "notifier_blocked",
      "caller": "exit_mmap", "duration_seconds": 5e-06}),
    (dict(type=3, pid=77, result=2),                                 # skipped: not a call, no caller
     {"event": "reap_attempt", "ts_ns": 1_000_000_007, "victim_pid": 77, "result": "skipped"}),
    (dict(type=4, pid=77, tid=12),
     {"event": "reaper_gave_up", "ts_ns": 1_000_000_007, "victim_pid": 77}),
    (dict(type=5, pid=300, result=3, comm=b"qemu"),
     {"event": "unpaired_start", "ts_ns": 1_000_000_007, "unpaired": 3, "pid": 300, "comm": "qemu"}),
    (dict(type=12, pid=1),
     {"event": "type12", "ts_ns": 1_000_000_007}),
])
def test_describe(fields, expected):
    assert decode(bytes(raw(**fields))).describe(resolve) == expected
