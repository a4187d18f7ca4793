"""A step that does not finish in time: say where everything is stuck, then exit.

The guest is slow but not that slow; a step past its limit is a hang (in the kernel,
in an attach or detach, in a child). What is printed: the Python stacks of this
process, the kernel stacks of its threads and of its children, and the kernel log's
tail. Then the process exits (3), which ends the guest.
"""
import faulthandler
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kernel_stacks(pid):
    lines = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            comm = (task / "comm").read_text().strip()
            lines.append(f"-- {pid}/{task.name} {comm} ({(task / 'wchan').read_text()})")
            lines += (task / "stack").read_text().splitlines()
        except OSError:
            pass
    return lines


def _report(label, seconds):
    print(f"\nbench: HANG: {label} still running after {seconds} s", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    me = os.getpid()
    for pid in [me] + _children(me):
        print("\n".join(_kernel_stacks(pid)), file=sys.stderr, flush=True)
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=20).stdout
        print("\n".join(log.splitlines()[-40:]), file=sys.stderr, flush=True)
    except (OSError, subprocess.TimeoutExpired):
        pass
    os._exit(3)


@contextmanager
def limit(label, seconds):
    """Run the with-block; past `seconds`, report the hang and exit."""
    timer = threading.Timer(seconds, _report, (label, seconds))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
