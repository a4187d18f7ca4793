"""`mnmon serve` on the real kernel, scraped over HTTP while the scenarios run:
the scraped numbers equal the ground truth, and promtool finds nothing wrong."""
import json
import subprocess
import time

import pytest

from bed import scenarios
from bed.evidence import kvm_invalidations
from bed.fixture_dev import read_stats
from tests.support.mnmon_proc import Serve, run, value

# The monitor held by the modules before may stay attached through this one (held_monitor.py):
# serve runs in a process of its own.
HOLDS_MONITOR = True

NB = "nonblockable"


@pytest.fixture(scope="module")
def srv():
    with Serve("--discovery.interval", "500ms") as s:
        yield s


def wait_probes(srv, *symbols, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = srv.samples()
        # fentry or kprobe, or "core" for an end the core probes count with no probe of its own
        if all(any(value(got, "mnmon_probe_attached", probe=f"notifier:{s}", method=m) == 1
                   for m in ("fentry", "kprobe", "core")) for s in symbols):
            return got
        time.sleep(0.3)
    pytest.fail(f"serve did not attach {symbols} within {timeout}s")


def test_scrape_during_ab_oom_equals_ground_truth(srv):
    a, b = "mnmon_fx_list_never_fail_start", "mnmon_fx_list_fail_nonblock_start"
    base = {}

    def ready(info):
        base["scrape"] = wait_probes(srv, a, b, "mnmon_fx_list_never_fail_end", "mnmon_fx_list_fail_nonblock_end")
        base["fixture"] = read_stats()

    child = scenarios.run_oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")], on_ready=ready)
    time.sleep(0.5)
    after, fixture = srv.samples(), read_stats()
    assert child.returncode == -9
    d = lambda name, **l: (value(after, name, **l) or 0) - (value(base["scrape"], name, **l) or 0)
    slot = child.info["slots"]
    fx = lambda name, field: getattr(fixture[slot[name]], field) - getattr(base["fixture"][slot[name]], field)
    n = lambda sym, mode, result: d("mnmon_notifier_invalidations_total", notifier=sym, module="mnmon_fixture",
                                    kind="list", mode=mode, result=result)
    b_fail = fx("B", "nonblockable_fail")
    assert b_fail > 0
    assert n(b, NB, "eagain") == b_fail
    assert n(a, NB, "ok") == fx("A", "nonblockable_ok")
    assert n(a, NB, "eagain") == 0
    assert d("mnmon_oom_victims_total") == 1
    assert d("mnmon_oom_reap_attempts_total", result="notifier_blocked") == 10
    assert d("mnmon_oom_reaper_gave_up_total") == 1
    assert d("mnmon_oom_reap_blocked_total", notifier=b, module="mnmon_fixture") == 10
    assert d("mnmon_unpaired_invalidate_starts_total") == 0


def test_scrape_during_kvm_equals_the_kernels_trace(srv):
    sym = "kvm_mmu_notifier_invalidate_range_start"
    before = srv.samples()
    with kvm_invalidations() as hits:
        scenarios.run_kvm(iterations=200)
    after = srv.samples()
    got = value(after, "mnmon_notifier_invalidations_total", notifier=sym, module="kvm", kind="list",
                mode="blockable", result="ok") - \
        value(before, "mnmon_notifier_invalidations_total", notifier=sym, module="kvm", kind="list",
              mode="blockable", result="ok")
    assert hits.hits >= 200 and got == hits.hits


def test_promtool_finds_no_problems(srv):
    text = srv.text()
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
    # Histograms are exposed whole: buckets, _sum, _count.
    assert "mnmon_notifier_invalidation_duration_seconds_bucket{" in text
    assert 'mnmon_build_info{bcc_version="' in text


def test_sample_json_names_the_same_series_as_metrics(srv):
    r = run("sample", "--duration", "2s", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    sampled = {(s["name"], frozenset(s["labels"].items())) for s in json.loads(r.stdout)["series"]}
    scraped = {k for k in srv.samples() if k[0].startswith("mnmon_")}
    # Both monitors found the same callbacks in BTF; serve also saw the fixture's
    # registrations and the scenarios' OOM victims (by cgroup), which happened before
    # sample started.
    fixture_free = lambda keys: {k for k in keys if "mnmon_fx_" not in str(k) and "mnmon-victim-" not in str(k)
                                 and k[0] != "mnmon_scrape_duration_seconds"}
    assert fixture_free(sampled) == fixture_free(scraped)


def test_landing_page_and_404(srv):
    assert 'href="metrics"' in srv.text("/")     # relative: works behind a path-prefix proxy
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        srv.text("/nothing")
    assert e.value.code == 404


def test_sigterm_detaches_cleanly(srv):
    rc, out = srv.stop()
    assert rc == 0, out
    assert "Traceback" not in out


def test_watch_prints_the_reapers_story_as_it_happens():
    import subprocess as sp
    import sys
    from tests.support.mnmon_proc import REPO
    w = sp.Popen([sys.executable, "-m", "monitor", "watch", "--json"], cwd=REPO,
                 stdout=sp.PIPE, stderr=sp.PIPE, text=True)
    try:
        assert w.stderr.readline().startswith("attached"), "watch did not attach"
        # The fixture's callbacks are picked up at registration, attached within watch's 2 s refresh.
        child = scenarios.run_oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")],
                                  on_ready=lambda info: time.sleep(5))
        time.sleep(2)
    finally:
        w.terminate()
        out, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    events = [json.loads(l) for l in out.splitlines()]
    mine = lambda kind: [e for e in events if e["event"] == kind and e.get("victim_pid", e.get("pid")) == child.pid]
    assert len(mine("oom_victim")) == 1
    attempts = mine("reap_attempt")
    assert len(attempts) == 10
    assert {(a["result"], a["blocked_by"], a["blocked_by_module"]) for a in attempts} == \
        {("notifier_blocked", "mnmon_fx_list_fail_nonblock_start", "mnmon_fixture")}
    assert len(mine("reaper_gave_up")) == 1
    failed = [e for e in events if e["event"] == "notifier_failed"]
    assert failed and {e["notifier"] for e in failed} == {"mnmon_fx_list_fail_nonblock_start"}
    assert {e["mode"] for e in failed} == {"nonblockable"}

