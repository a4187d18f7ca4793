"""What the service and the container tests both check in the booted guest: mnmon's
numbers for one scenario, scraped from the host, against the fixture's own counts."""
import json
import time

from tests.kernel.test_bed import MAX_OOM_REAP_RETRIES
from tests.system.scrape import attached, samples, value

NB, B = "nonblockable", "blockable"
# What the bare bed attaches on the guest's kernel: the core pair, registration, the reaper, OOM tracepoints.
HOST_PROBES = ("invalidate_range_start", "invalidate_range_end", "notifier_register", "interval_notifier_insert",
               "oom_reap_task_mm", "oom:mark_victim", "oom:start_task_reaping")
A_START, B_START = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_fail_nonblock_start"


def in_step(guest, what, probes):
    """tests/system/guest_scenario.py WHAT in the guest, in step: once its notifiers are
    registered and mnmon has attached to probes, the baseline scrape; then the work.
    (baseline scrape, the guest's JSON)."""
    p = guest.popen(f"cd /opt/mnmon && python3 -m tests.system.guest_scenario {what}")
    try:
        line = p.stdout.readline().strip()
        assert line == "registered", (line, p.stderr.read() if p.poll() is not None else "")
        before = wait_attached(guest, probes)
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    return before, json.loads(out.splitlines()[-1])


def wait_attached(guest, probes, timeout=120):
    """Until every probe is attached (discovery finds the fixture's callbacks within its interval)."""
    deadline = time.monotonic() + timeout
    snap = {}
    while time.monotonic() < deadline:
        try:
            snap = samples(guest.url + "/metrics")
        except OSError:
            snap = {}
        if all(p in attached(snap) for p in probes):
            return snap
        time.sleep(2)
    raise AssertionError(f"not attached within {timeout} s: {set(probes) - set(attached(snap))}")


def ab_oom(guest):
    """The A/B OOM scenario; (mnmon's counts, the fixture's counts, the reaper's deltas)."""
    guest.python("tests.system.guest_scenario", "ready")
    before, out = in_step(guest, "oom", [f"notifier:{A_START}", f"notifier:{B_START}"])
    time.sleep(1)
    after = samples(guest.url + "/metrics")
    assert out["returncode"] == -9, out
    d = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    got, want = {}, {}
    for name, sym in (("A", A_START), ("B", B_START)):
        fx = out["slots"][name]
        for mode, result, field in ((B, "ok", "blockable_ok"), (NB, "ok", "nonblockable_ok"),
                                    (NB, "eagain", "nonblockable_fail")):
            got[name, mode, result] = d("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture",
                                        kind="list", mode=mode, result=result)
            want[name, mode, result] = fx[field]
    # The reaper by mnmon and by the kernel: each attempt that got the victim's mmap lock is a
    # start_task_reaping event (skip_task_reaping: it did not), the give-up one "unable to reap"
    # line; the kernel names each failing callback in a line of its own, all B's here.
    k = out["kernel"]
    assert k["oom/skip_task_reaping"] == 0 and k["failed_other"] == 0, k
    assert k["failed_B"] == want["B", NB, "eagain"], (k, want)
    reaper = {"victims": d("mnmon_oom_victims_total"),
              "attempts_blocked": d("mnmon_oom_reap_attempts_total", result="notifier_blocked"),
              "blocked_by_B": d("mnmon_oom_reap_blocked_total", notifier=B_START, module="mnmon_fixture"),
              "gave_up": d("mnmon_oom_reaper_gave_up_total")}
    kernel = {"victims": k["oom/mark_victim"], "attempts_blocked": k["oom/start_task_reaping"],
              "blocked_by_B": k["oom/start_task_reaping"], "gave_up": k["unable_to_reap"]}
    return got, want, reaper, kernel


def check_ab_oom(guest, what):
    """The A/B OOM scenario's counts by mnmon == the fixture's; the reaper's == the kernel's."""
    got, want, reaper, kernel = ab_oom(guest)
    print(f"\n{what} A/B OOM (mnmon/fixture): {report(got, want)}; reaper (mnmon/kernel): "
          + ", ".join(f"{k} {reaper[k]:g}/{kernel[k]}" for k in kernel))
    assert want["B", NB, "eagain"] > 0
    assert got == want
    # B blocks every attempt: the kernel retries MAX_OOM_REAP_RETRIES times, then gives up.
    assert reaper == kernel == {"victims": 1, "attempts_blocked": MAX_OOM_REAP_RETRIES,
                                "blocked_by_B": MAX_OOM_REAP_RETRIES, "gave_up": 1}


def churn(guest):
    """Blockable churn through one never-failing notifier: (mnmon's count, the fixture's)."""
    guest.python("tests.system.guest_scenario", "ready")
    before, out = in_step(guest, "churn", [f"notifier:{A_START}"])
    time.sleep(1)
    after = samples(guest.url + "/metrics")
    labels = dict(notifier=A_START, module="mnmon_fixture", kind="list", mode=B, result="ok")
    got = value(after, "mnmon_notifier_invalidations_total", **labels) - \
        value(before, "mnmon_notifier_invalidations_total", **labels)
    return got, out["slots"]["churn"]["blockable_ok"]


def report(got, want):
    return ", ".join(f"{k[0]} {k[1]} {k[2]}: {got[k]:g}/{want[k]}" for k in sorted(want))
