"""A driver that shows up while mnmon runs, as users meet one: its module is loaded after
mnmon is ready (built without BTF, as DKMS builds on Debian are), and a process
registers notifiers and works at once, without waiting for anyone to attach.

Parent side: reload_fixture(), run_register_and_churn(). Child side:
`python -m bed.late_driver churn ...` prints one JSON line with its pid and
slots, then churns its memory at once and waits to be told to exit.
"""
import argparse
import ctypes
import json
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

from bed.fixture_dev import Fixture

# Built for the kernel the guest runs (Makefile: build/fixture/<release>/).
FIXTURE_KO = Path("build/fixture", os.uname().release, "mnmon_fixture.ko")
PAGE = mmap.PAGESIZE


def module_file(btf=False):
    """The fixture's .ko as a DKMS build of a driver comes (no BTF: Debian's kbuild makes
    module BTF only where pahole and the kernel's vmlinux are at hand), or as built."""
    if btf or not has_btf_section(FIXTURE_KO):
        return FIXTURE_KO
    out = FIXTURE_KO.parent / "nobtf" / FIXTURE_KO.name
    if not out.exists() or out.stat().st_mtime < FIXTURE_KO.stat().st_mtime:
        out.parent.mkdir(exist_ok=True)
        # .BTF.base: distilled base BTF of 6.14+ builds; without .BTF it means nothing.
        subprocess.run(["objcopy", "--remove-section=.BTF", "--remove-section=.BTF.base", str(FIXTURE_KO), str(out)],
                       check=True)
    return out


def has_btf_section(ko):
    sections = subprocess.run(["readelf", "-S", "--wide", str(ko)], check=True, capture_output=True, text=True).stdout
    return " .BTF " in sections


def reload_fixture(btf=False):
    """rmmod and insmod the fixture module: new addresses, counters from zero."""
    if "mnmon_fixture " in Path("/proc/modules").read_text():
        subprocess.run(["rmmod", "mnmon_fixture"], check=True)
    subprocess.run(["insmod", str(module_file(btf))], check=True)
    deadline = time.monotonic() + 5
    while not Path("/dev/mnmon_fixture").exists():     # udev-less guest: devtmpfs makes it
        if time.monotonic() > deadline:
            raise RuntimeError("/dev/mnmon_fixture did not appear")
        time.sleep(0.05)


def has_btf(module="mnmon_fixture"):
    return Path("/sys/kernel/btf", module).exists()


def child_churn(args):
    fx = Fixture()
    m = mmap.mmap(-1, args.pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if args.crowd:
        # A crowd, as a GPU driver's one interval notifier per userptr buffer: every one over
        # the same range, the first half of one callback, the second of another.
        behaviours = ["never_fail" if i < args.crowd // 2 else "sleep"
                      for i in range(args.crowd)]
        slots = {"crowd": [fx.add_interval(b, addr, len(m)) for b in behaviours]}
    else:
        slots = {"list": fx.add_list(args.list), "interval": fx.add_interval(args.interval, addr, len(m))}
    print(json.dumps({"pid": os.getpid(), "slots": slots}), flush=True)
    for i in range(args.iterations):          # at once: nobody is waited for
        if i == args.pause_at:                # only where a test wants both sides of a hand-over
            print("paused", flush=True)
            sys.stdin.readline()
        m[0] = 1
        m.madvise(mmap.MADV_DONTNEED)
    print("done", flush=True)
    sys.stdin.read()                          # exit unmaps (and invalidates): only when told


def run_register_and_churn(iterations, list_behaviour="never_fail", interval_behaviour="never_fail",
                           at_done=None, timeout=600, pause_at=-1, at_pause=None, crowd=0):
    """Run the child; at_done() runs after its churn, before it exits. Returns (info, at_done's value).
    pause_at: the child stops after that many iterations until at_pause() has returned."""
    p = subprocess.Popen([sys.executable, "-m", "bed.late_driver", "churn", "--iterations", str(iterations),
                          "--list", list_behaviour, "--interval", interval_behaviour, "--pause-at", str(pause_at),
                          "--crowd", str(crowd)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.readline())
        line = p.stdout.readline().strip()
        if line == "paused":
            at_pause()
            p.stdin.write("go\n")
            p.stdin.flush()
            line = p.stdout.readline().strip()
        assert line == "done", line
        result = at_done() if at_done else None
        p.stdin.close()
        p.wait(timeout=timeout)
    except BaseException:
        p.kill()
        p.wait()
        raise
    assert p.returncode == 0, p.returncode
    return info, result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bed.late_driver")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("churn")
    c.add_argument("--iterations", type=int, default=1000)
    c.add_argument("--pages", type=int, default=1)
    c.add_argument("--list", default="never_fail")
    c.add_argument("--interval", default="never_fail")
    c.add_argument("--pause-at", type=int, default=-1)
    c.add_argument("--crowd", type=int, default=0, help="only this many interval notifiers over one range")
    args = ap.parse_args(argv)
    child_churn(args)


if __name__ == "__main__":
    main()
