"""Two OOM victims in a row, for premature victims (bpf/premature.bpf.c).

The first victim (bed.scenarios' victim child: notifiers, a thread parked in the kernel
so its mm outlives the kill, memory grown until its cgroup's OOM picks it) is killed; once
the reaper is done with it (gave up, or reaped), a second process, waiting in its cgroup
(the same or another), grows until the OOM killer picks it too. The first mm is held until
the parked thread wakes: the second victim comes while it is held, or after its teardown
(teardown_first).
"""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bed.cgroups import remove_when_empty
from bed.evidence import KernelLog
from bed.scenarios import CGROUP_ROOT, MB


@dataclass
class Pair:
    first_pid: int
    second_pid: int
    first_info: dict
    first_cgroup: str
    second_cgroup: str
    reaper_line: str                # the kernel's "unable to reap" or "reaped process" line
    first_rc: int = 0
    second_rc: int = 0
    lines: list = field(default_factory=list)


def _cgroup(limit_mb):
    cg = CGROUP_ROOT / f"mnmon-pair-{os.getpid()}-{time.monotonic_ns()}"
    cg.mkdir()
    (cg / "memory.max").write_text(f"{limit_mb * MB}")
    (cg / "memory.swap.max").write_text("0")
    return cg


def _child(argv):
    p = subprocess.Popen([sys.executable, "-m", "bed.scenarios", "victim", *argv],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line:
        p.wait()
        raise RuntimeError(f"victim child died before announcing itself (rc={p.returncode})")
    return p, json.loads(line)


def _go(p):
    p.stdin.write("go\n")
    p.stdin.flush()


def _wait_line(log, pattern, timeout, seen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.lines():
            seen.append(line)
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise TimeoutError(f"no kernel log line like {pattern!r} in {timeout} s")


def run_pair(lists, park_ms=20000, same_cgroup=True, teardown_first=False, limit_mb=64, on_ready=None,
             timeout=300):
    """Run the two victims; returns a Pair once both processes have exited.

    lists: the first victim's list notifiers, [(name, behaviour)] as bed.scenarios.run_oom.
    """
    first_cg = _cgroup(limit_mb)
    second_cg = first_cg if same_cgroup else _cgroup(limit_mb)
    log, lines = KernelLog(), []
    second = first = None
    try:
        # Waiting from the start, so that its start-up is not in the held time.
        second, _ = _child(["--cgroup", str(second_cg), "--park-ms", "1"])
        first, info = _child(["--cgroup", str(first_cg), "--park-ms", str(park_ms)]
                             + [a for name, b in lists for a in ("--list", f"{name}={b}")])
        if on_ready:
            on_ready(info)
        _go(first)
        reaper = _wait_line(log, rf"oom_reaper: (unable to reap pid:|reaped process ){info['pid']}\b", 120, lines)
        if teardown_first:
            first.wait(timeout=timeout)     # its parked thread woke, its mm is torn down
        _go(second)
        second.wait(timeout=timeout)
        first.wait(timeout=timeout)
        lines += log.lines()
        return Pair(info["pid"], second.pid, info, str(first_cg), str(second_cg), reaper,
                    first.returncode, second.returncode, lines)
    finally:
        for p in (first, second):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        log.close()
        for cg in {first_cg, second_cg}:
            remove_when_empty(Path(cg))
