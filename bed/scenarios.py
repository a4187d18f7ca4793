"""Workloads that make the kernel invalidate, each run in a child process of its own.

Parent side: run_kvm(), run_oom(), run_churn() return what the child did (its pid,
the fixture slots it subscribed).  Child side: `python -m bed.scenarios
kvm|victim|churn ...` prints one JSON line with its pid and slots, then works.

    1. KVM: a VM whose guest memory is churned with madvise(MADV_DONTNEED): KVM's
       in-tree list notifier fires once per invalidation.
    2. A/B under OOM: notifier A (never fails, has an end callback) and B (fails when
       non-blockable), a thread parked in uninterruptible sleep, memory grown in a
       small memory cgroup until the OOM killer picks the process; the reaper
       retries ten times and gives up.
    3. The same with an interval notifier that fails (the kernel logs nothing for it), or
       several over one range, called in the order they were added: one fails, those
       before it are called, those after it are not.
    4. Blockable churn with a sleeping notifier, for latency.
"""
import argparse
import ctypes
import json
import mmap
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bed.fixture_dev import Fixture, read_stats
from bed.cgroups import remove_when_empty

PAGE = mmap.PAGESIZE
CGROUP_ROOT = Path("/sys/fs/cgroup")
MB = 1 << 20


# ---------------------------------------------------------------- memory
def anon_private(size):
    """A private anonymous mapping and its address (MAP_SHARED would be shmem, which the reaper skips)."""
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    return m, addr


def touch(m, size=None):
    for off in range(0, size or len(m), PAGE):
        m[off] = 1


# ---------------------------------------------------------------- KVM
KVM_CREATE_VM = 0xAE01
KVM_SET_USER_MEMORY_REGION = 0x4020AE46      # _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)


def kvm_vm_with_memory(size):
    """Create a VM with one memslot backed by private anonymous memory; returns (fds, mmap)."""
    import fcntl
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    m, addr = anon_private(size)
    region = struct.pack("=IIQQQ", 0, 0, 0, size, addr)
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
    return (kvm, vm), m


def child_kvm(args):
    fds, m = kvm_vm_with_memory(args.pages * PAGE)
    announce(madvise_calls=args.iterations)
    for _ in range(args.iterations):
        touch(m)
        m.madvise(mmap.MADV_DONTNEED)
    hold()


# ---------------------------------------------------------------- churn
def child_churn(args):
    fx = Fixture()
    m, addr = anon_private(args.pages * PAGE)
    if args.kind == "list":
        slot = fx.add_list(args.behaviour, args.sleep_us)
    elif args.kind == "two_pass":
        slot = fx.add_two_pass(args.behaviour, addr, len(m), args.sleep_us)
    else:
        slot = fx.add_interval(args.behaviour, addr, len(m), args.sleep_us)
    announce(slot=slot, madvise_calls=args.iterations)
    for _ in range(args.iterations):
        m[0] = 1
        m.madvise(mmap.MADV_DONTNEED)
    hold()


# ---------------------------------------------------------------- OOM victim
def child_victim(args):
    (Path(args.cgroup) / "cgroup.procs").write_text(str(os.getpid()))
    fx = Fixture()
    slots = {}
    keep = []

    def touched():
        # An interval covers memory touched up front, so every reap attempt meets it.
        m, addr = anon_private(args.interval_mb * MB)
        touch(m)
        keep.append(m)
        return m, addr

    if args.interval:
        m, addr = touched()
        slots["interval"] = fx.add_interval(args.interval, addr, len(m))
    if args.overlap:
        # Several over one range: equal starts go right in the interval tree, so the kernel
        # calls them in the order they were added.
        overlapped, addr = touched()
        for name, behaviour in args.overlap:
            slots[name] = fx.add_interval(behaviour, addr, len(overlapped))
    if args.two_pass:               # 7.1+: the same, with a two-pass interval notifier
        m, addr = touched()
        slots["two_pass"] = fx.add_two_pass(args.two_pass, addr, len(m))
    # List notifiers go on the head of the mm's hlist: the last one added is called first.
    for name, behaviour in reversed(args.list):
        slots[name] = fx.add_list(behaviour)
    announce(slots=slots)
    if args.overlap and args.worked:
        # The driver has worked before the OOM: one blockable invalidation of its range,
        # every notifier called and succeeding.
        overlapped.madvise(mmap.MADV_DONTNEED, 0, PAGE)
        touch(overlapped, PAGE)
    parked = threading.Thread(target=fx.park, args=(args.park_ms,), daemon=True)
    parked.start()
    time.sleep(0.3)                 # let the thread reach msleep() before the OOM kill
    if args.no_grow:                # the parent kills us itself
        print("parked", flush=True)
        while True:
            time.sleep(1)
    while True:                     # grow until the OOM killer picks us
        m, _ = anon_private(4 * MB)
        touch(m)
        keep.append(m)


def announce(**what):
    """Say who we are and what we subscribed, then wait for the parent's go
    (it may first make sure a monitor has attached to our notifiers)."""
    print(json.dumps({"pid": os.getpid(), **what}), flush=True)
    sys.stdin.readline()


def hold():
    """Say the work is done, then stay alive until the parent has read its evidence:
    exiting unmaps everything, which invalidates too."""
    print("done", flush=True)
    sys.stdin.read()


# ---------------------------------------------------------------- parent side
@dataclass
class Child:
    pid: int
    info: dict
    returncode: int
    seconds: float
    at_done: object = None          # what the at_done callback returned


def _spawn(argv, timeout, at_done=None, on_ready=None):
    """Run a scenario child. on_ready(info) runs before the child starts its work;
    at_done() runs while a holding child waits after it, before it exits."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "bed.scenarios", *argv],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    result = None
    try:
        if line:
            if on_ready:
                on_ready(json.loads(line))
            p.stdin.write("go\n")
            p.stdin.flush()
        if line and p.stdout.readline().strip() == "done" and at_done:
            result = at_done()
        p.stdin.close()
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    if not line:
        raise RuntimeError(f"scenario {argv[0]} died before announcing itself (rc={p.returncode})")
    info = json.loads(line)
    return Child(info["pid"], info, p.returncode, time.monotonic() - t0, result)


def run_kvm(iterations=200, pages=16, timeout=300, at_done=None, on_ready=None):
    return _spawn(["kvm", "--iterations", str(iterations), "--pages", str(pages)], timeout, at_done, on_ready)


def run_churn(kind="list", behaviour="sleep", sleep_us=0, iterations=100, pages=1, timeout=600,
              at_done=read_stats, on_ready=None):
    """Churn; by default child.at_done holds the fixture's counts read before the child exits."""
    return _spawn(["churn", "--kind", kind, "--behaviour", behaviour, "--sleep-us", str(sleep_us),
                   "--iterations", str(iterations), "--pages", str(pages)], timeout, at_done, on_ready)


def run_oom(lists=(), interval=None, park_ms=10000, limit_mb=64, timeout=120, on_ready=None, two_pass=None,
            overlap=(), worked=False):
    """Run an OOM victim in its own memory cgroup; returns once every thread has exited.

    lists: [(name, behaviour)] in call order, e.g. [("A", "never_fail"), ("B", "fail_nonblock")].
    overlap: the same for interval notifiers over one range; worked: one blockable
    invalidation of that range first (after the parent's go).
    """
    cg = CGROUP_ROOT / f"mnmon-victim-{os.getpid()}-{time.monotonic_ns()}"
    cg.mkdir()
    try:
        (cg / "memory.max").write_text(f"{limit_mb * MB}")
        (cg / "memory.swap.max").write_text("0")
        argv = ["victim", "--cgroup", str(cg), "--park-ms", str(park_ms)]
        for name, behaviour in lists:
            argv += ["--list", f"{name}={behaviour}"]
        if interval:
            argv += ["--interval", interval]
        if two_pass:
            argv += ["--two-pass", two_pass]
        for name, behaviour in overlap:
            argv += ["--overlap", f"{name}={behaviour}"]
        if worked:
            argv += ["--worked"]
        return _spawn(argv, timeout, on_ready=on_ready)
    finally:
        remove_when_empty(cg)


SYS_process_mrelease = 448          # x86_64, since 5.15


def run_mrelease(lists, park_ms=8000, timeout=120, on_ready=None):
    """A victim with notifiers and a parked thread, SIGKILLed by us, its memory then
    released with process_mrelease(2). Returns (Child, the syscall's errno or 0)."""
    import signal
    p = subprocess.Popen([sys.executable, "-m", "bed.scenarios", "victim", "--cgroup", "/sys/fs/cgroup",
                          "--park-ms", str(park_ms), "--no-grow"]
                         + [a for name, b in lists for a in ("--list", f"{name}={b}")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    info = json.loads(p.stdout.readline())
    if on_ready:
        on_ready(info)
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "parked"
    pidfd = os.pidfd_open(info["pid"])
    os.kill(info["pid"], signal.SIGKILL)
    libc = ctypes.CDLL(None, use_errno=True)
    err = 0
    for _ in range(100):            # the kill takes effect once the main thread runs again
        ret = libc.syscall(SYS_process_mrelease, pidfd, 0)
        err = 0 if ret == 0 else ctypes.get_errno()
        if err != 22:               # EINVAL: not dying yet
            break
        time.sleep(0.05)
    os.close(pidfd)
    p.wait(timeout=timeout)
    return Child(info["pid"], info, p.returncode, 0.0), err


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bed.scenarios")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kvm")
    k.add_argument("--iterations", type=int, default=200)
    k.add_argument("--pages", type=int, default=16)
    c = sub.add_parser("churn")
    c.add_argument("--kind", choices=["list", "interval", "two_pass"], default="list")
    c.add_argument("--behaviour", default="sleep")
    c.add_argument("--sleep-us", type=int, default=0)
    c.add_argument("--iterations", type=int, default=100)
    c.add_argument("--pages", type=int, default=1)
    v = sub.add_parser("victim")
    v.add_argument("--cgroup", required=True)
    v.add_argument("--park-ms", type=int, default=10000)
    name_behaviour = lambda s: tuple(s.split("=", 1))      # NAME=behaviour
    v.add_argument("--list", action="append", default=[], type=name_behaviour)
    v.add_argument("--interval", default=None, help="behaviour of an interval notifier")
    v.add_argument("--two-pass", default=None, help="behaviour of a two-pass interval notifier (7.1+)")
    v.add_argument("--overlap", action="append", default=[], type=name_behaviour,
                   help="NAME=behaviour: interval notifiers over one range, in call order")
    v.add_argument("--worked", action="store_true", help="invalidate the overlapping range once, blockable")
    v.add_argument("--interval-mb", type=int, default=8)
    v.add_argument("--no-grow", action="store_true", help="park and wait to be killed")
    args = ap.parse_args(argv)
    {"kvm": child_kvm, "churn": child_churn, "victim": child_victim}[args.cmd](args)


if __name__ == "__main__":
    main()
