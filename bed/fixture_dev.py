"""The fixture module from user space: subscribe notifiers, park threads, read its counts.

Numbers mirror bed/fixture/mnmon_fixture.h (tests/unit/test_fixture_dev.py
checks that they agree).
"""
import ctypes
import fcntl
import functools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

DEVICE = "/dev/mnmon_fixture"
STATS = Path("/sys/kernel/debug/mnmon_fixture/stats")

NEVER_FAIL, FAIL_NONBLOCK, SLEEP = 0, 1, 2
BEHAVIOURS = {"never_fail": NEVER_FAIL, "fail_nonblock": FAIL_NONBLOCK, "sleep": SLEEP}

_SUBSCRIBE = struct.Struct("=IIQQ")       # struct mnmon_fx_subscribe


def _ioc(direction, nr, size, magic=ord("N")):
    return (direction << 30) | (size << 16) | (magic << 8) | nr


_IOC_WRITE = 1
ADD_LIST = _ioc(_IOC_WRITE, 0x40, _SUBSCRIBE.size)
ADD_INTERVAL = _ioc(_IOC_WRITE, 0x41, _SUBSCRIBE.size)
PARK = _ioc(0, 0x42, 0)
ADD_TWO_PASS = _ioc(_IOC_WRITE, 0x43, _SUBSCRIBE.size)


@dataclass
class Slot:
    """One notifier's own counts, as the fixture module kept them."""
    slot: int
    kind: str               # list | interval | two_pass
    behaviour: str
    sleep_us: int
    pid: int
    comm: str
    start_fn: str           # the callback symbol that reports outcomes
    blockable_ok: int
    blockable_fail: int
    nonblockable_ok: int
    nonblockable_fail: int
    blockable_ends: int
    nonblockable_ends: int  # range_end calls, or a two-pass notifier's finish passes
    finish_skipped: int = 0  # two-pass starts that returned no finish (GFP_NOWAIT failed)
    releases: int = 0       # list notifiers: release calls (the mm's teardown)
    release_ns: int = 0     # CLOCK_MONOTONIC ns of the first release (0: none yet)
    hist_log2_ns: list = field(default_factory=list)

    @property
    def calls(self):
        return self.blockable_ok + self.blockable_fail + self.nonblockable_ok + self.nonblockable_fail


def parse_stats(text):
    """Parse the fixture's stats file: {slot id: Slot}."""
    slots = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        kv = dict(item.split("=", 1) for item in line.split())
        hist = [int(x) for x in kv.pop("hist_log2_ns").split(",")]
        kv = {k: (v if k in ("kind", "behaviour", "comm", "start_fn") else int(v)) for k, v in kv.items()}
        s = Slot(**kv, hist_log2_ns=hist)
        slots[s.slot] = s
    return slots


def read_stats(path=STATS):
    return parse_stats(Path(path).read_text())


class Fixture:
    """An open /dev/mnmon_fixture: its subscriptions live until close()."""

    def __init__(self, path=DEVICE):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def add_list(self, behaviour, sleep_us=0):
        """Subscribe a list notifier to this process's mm; returns the slot id."""
        return self._subscribe(ADD_LIST, BEHAVIOURS[behaviour], sleep_us, 0, 0)

    def add_interval(self, behaviour, start, length, sleep_us=0):
        """Subscribe an interval notifier over [start, start+length); returns the slot id."""
        return self._subscribe(ADD_INTERVAL, BEHAVIOURS[behaviour], sleep_us, start, length)

    def add_two_pass(self, behaviour, start, length, sleep_us=0):
        """Subscribe a two-pass interval notifier (7.1+) over [start, start+length); returns the slot id."""
        return self._subscribe(ADD_TWO_PASS, BEHAVIOURS[behaviour], sleep_us, start, length)

    def park(self, ms):
        """Sleep uninterruptibly in the kernel for ms milliseconds (SIGKILL waits)."""
        fcntl.ioctl(self.fd, PARK, ms)

    def close(self):
        os.close(self.fd)

    def _subscribe(self, cmd, behaviour, sleep_us, start, length):
        # fcntl.ioctl hides the ioctl's return value (the slot id): go through libc.
        buf = ctypes.create_string_buffer(_SUBSCRIBE.pack(behaviour, sleep_us, start, length))
        ret = _libc().ioctl(self.fd, ctypes.c_ulong(cmd), buf)
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"fixture ioctl {cmd:#x}: {os.strerror(err)}")
        return ret


@functools.lru_cache(maxsize=None)
def _libc():
    return ctypes.CDLL(None, use_errno=True)
