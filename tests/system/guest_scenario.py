"""Run inside a booted guest: one scenario of the real-kernel bed, the fixture's own
counts for it as JSON, in step with the host that scrapes mnmon:

    python -m tests.system.guest_scenario ready   load the fixture, delegate memory cgroups
    python -m tests.system.guest_scenario oom     A never fails, B fails non-blockable, OOM
    python -m tests.system.guest_scenario churn   blockable churn through one never-failing notifier

oom and churn print "registered" once the child's notifiers exist and wait for a line
on stdin (the host has seen mnmon attach to them and scraped its baseline); then the
fixture's baseline is read, the child works, and one JSON line follows.
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from bed import scenarios
from bed.evidence import KernelLog, TraceInstance
from bed.fixture_dev import read_stats

# Built in the root for its own kernel (Makefile: build/fixture/<release>/).
FIXTURE = Path("build/fixture") / os.uname().release / "mnmon_fixture.ko"
OOM_EVENTS = ["oom/mark_victim", "oom/start_task_reaping", "oom/skip_task_reaping"]
COUNTS = ("blockable_ok", "blockable_fail", "nonblockable_ok", "nonblockable_fail",
          "blockable_ends", "nonblockable_ends")


def ready():
    """The fixture loaded, memory cgroups delegated: what bed/guest_setup.sh does."""
    if "mnmon_fixture " not in Path("/proc/modules").read_text():
        subprocess.run(["insmod", str(FIXTURE)], check=True)
    ctl = Path("/sys/fs/cgroup/cgroup.subtree_control")
    if "memory" not in ctl.read_text().split():
        ctl.write_text("+memory")


def main(argv=None):
    what = (argv or sys.argv[1:])[0]
    ready()
    if what == "ready":
        return
    before = {}

    def in_step(info):
        print("registered", flush=True)
        sys.stdin.readline()
        before.update(read_stats())

    kernel = None
    if what == "oom":
        # The kernel's own account of the reaper, beside mnmon's: its trace events for
        # the victim and the line it logs when it gives up.
        log = KernelLog()
        with TraceInstance("system-oom", OOM_EVENTS) as trace:
            child = scenarios.run_oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")], on_ready=in_step)
        lines = log.lines()
        log.close()
        kernel = {ev: len([e for e in trace.events(ev) if int(e.get("pid", -1)) == child.pid]) for ev in OOM_EVENTS}
        kernel["unable_to_reap"] = len([l for l in lines if re.search(rf"oom_reaper: unable to reap pid:{child.pid}\b", l)])
        # mm/mmu_notifier.c logs each failing callback by symbol: "%pS callback failed with %d in ...".
        failed = [l for l in lines if "callback failed with -11 in non-blockable context" in l]
        kernel["failed_B"] = len([l for l in failed if l.startswith("mnmon_fx_list_fail_nonblock_start+")])
        kernel["failed_other"] = len(failed) - kernel["failed_B"]
    else:
        child = scenarios.run_churn(kind="list", behaviour="never_fail", iterations=50, at_done=None,
                                    on_ready=in_step)
    after = read_stats()
    out = {"pid": child.pid, "returncode": child.returncode, "slots": {}, "kernel": kernel}
    slots = child.info.get("slots") or {"churn": child.info["slot"]}
    for name, slot in slots.items():
        now, then = asdict(after[slot]), asdict(before[slot]) if slot in before else {}
        out["slots"][name] = {"start_fn": now["start_fn"], **{k: now[k] - then.get(k, 0) for k in COUNTS}}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
