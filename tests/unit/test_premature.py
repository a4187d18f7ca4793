"""Premature OOM victims on the Python side: series only where every probe the figure needs
attached (else not countable, never a 0), blockers named, the watch event, the plan's reason."""
import ctypes

from monitor.plan import catalogue
from monitor.plan.attach_plan import plan
from monitor.read.contract import DEFINES, Event as RawEvent
from monitor.read.events import decode
from monitor.read.readers import build_snapshot
from tests.unit.test_attach_plan import CORE_SYMBOLS, facts
from tests.unit.test_readers import SIZES, Status

B_IP = 0xffffffffc0a11001
SYMS = {B_IP: ("mnmon_fx_list_fail_nonblock_start", "mnmon_fixture")}
ALL = [Status(p, "kprobe", True) for p in catalogue.PREMATURE_PROBES]


def resolve(ip):
    return SYMS.get(ip, ("unknown", "unknown"))


def raw(premature=None, held_slots=None, held_ns=0):
    out = {name: [0] * n for name, n in SIZES.items() if name.startswith("oom_")}
    out["oom_premature_victims"] = premature or {}
    for slot, n in (held_slots or {}).items():
        out["oom_held_mm_latency"][slot] = n
    out["oom_held_mm_latency_sum_ns"] = [held_ns]
    return out


def test_counted_by_the_blocking_notifier_and_unknown():
    snap = build_snapshot(raw({B_IP: 2, 0: 1}, {31: 1}, 2_310_000_000), resolve, statuses=ALL)
    assert snap.family("mnmon_oom_premature_victims_total") == [
        ({"module": "mnmon_fixture", "notifier": "mnmon_fx_list_fail_nonblock_start"}, 2),
        ({"module": "unknown", "notifier": "unknown"}, 1)]
    held = snap.get("mnmon_oom_given_up_mm_held_seconds")
    assert (held.count, held.sum) == (1, 2.31)
    # slot 31 holds [2^31, 2^32) ns: under the first bucket >= 4.29 s
    assert [le for le, n in held.buckets if n][0] == (1 << 32) / 1e9


def test_none_yet_is_a_zero_where_counted():
    snap = build_snapshot(raw(), resolve, statuses=ALL)
    assert snap.family("mnmon_oom_premature_victims_total") == [({"module": "unknown", "notifier": "unknown"}, 0)]


def test_not_countable_without_any_probe_it_needs():
    for missing in catalogue.PREMATURE_PROBES:
        statuses = [Status(p, "kprobe", p != missing) for p in catalogue.PREMATURE_PROBES]
        snap = build_snapshot(raw({B_IP: 1}), resolve, statuses=statuses)
        assert snap.family("mnmon_oom_premature_victims_total") == [], missing
        assert snap.get("mnmon_oom_given_up_mm_held_seconds") is None, missing


def test_plan_says_why_not_countable():
    # no symbol for exit_mmap: both premature probes off, with the one reason
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True, symbols=CORE_SYMBOLS - {"exit_mmap"}))
    by = {s.probe: s for s in p.probes}
    assert by["mm_teardown"].methods == by["oom_domain"].methods == ()
    assert by["mm_teardown"].reason == (
        "premature OOM victims not countable: mm_teardown: exit_mmap not in kallsyms (inlined, static or not built)")
    assert "-DPREMATURE=0" in p.cflags
    p = plan(facts("6.1.0-56-amd64", btf=True, kfunc=True))
    assert "-DPREMATURE=1" in p.cflags


def test_the_watch_event_links_both_victims():
    r = RawEvent(ts_ns=5, type=DEFINES["EV_PREMATURE_VICTIM"], pid=200, tid=200, ip=B_IP,
                 duration_ns=1_500_000_000, comm=b"grower", domain=4242, first_pid=100, first_comm=b"victim")
    e = decode(bytes(r))
    assert e.describe(resolve) == {
        "event": "premature_victim", "ts_ns": 5, "pid": 200, "comm": "grower", "first_pid": 100,
        "first_comm": "victim", "blocked_by": "mnmon_fx_list_fail_nonblock_start",
        "blocked_by_module": "mnmon_fixture", "first_held_seconds": 1.5, "domain_id": 4242}
    assert ctypes.sizeof(RawEvent) == 104


def test_sample_table_shows_it_or_says_not_countable():
    from monitor.cli.table import table
    counted = build_snapshot(raw({B_IP: 1}, {31: 1}, 2_310_000_000), resolve, statuses=ALL)
    text = table(counted, histograms=False)
    assert "premature victims: 1   given-up memory held: 1 times" in text
    assert "premature, earlier reap blocked by mnmon_fx_list_fail_nonblock_start [mnmon_fixture]: 1" in text
    off = [Status(p, "kprobe", p != "mm_teardown") for p in catalogue.PREMATURE_PROBES]
    text = table(build_snapshot(raw({B_IP: 1}), resolve, statuses=off), histograms=False)
    assert "premature victims: not countable here (see `mnmon doctor`)" in text


def test_doctor_line_names_the_reason():
    from types import SimpleNamespace
    from monitor.cli.doctor import premature_line
    from monitor.plan.coverage import measure
    st = lambda p, ok, reason="": SimpleNamespace(probe=p, attached=ok, reason=reason, disabled=False, method="kprobe")
    good = [st(p, True) for p in catalogue.PREMATURE_PROBES]
    assert premature_line(good, measure(good), True) == "premature OOM victims: countable here"
    bad = [st(p, p != "mm_teardown", "exit_mmap not in kallsyms") for p in catalogue.PREMATURE_PROBES]
    assert premature_line(bad, measure(bad), True) == \
        "premature OOM victims: not countable: exit_mmap not in kallsyms"


def test_every_function_probe_target_is_looked_up_in_kallsyms():
    # A target the facts never look for reads as "not in kallsyms" on every kernel.
    from monitor.kernel.facts import SYMBOLS_OF_INTEREST
    targets = {t for r in catalogue.ROWS if r.kind == catalogue.FUNCTION for t in r.targets}
    assert targets <= set(SYMBOLS_OF_INTEREST)
