"""build_snapshot on literal map contents, shaped as bpf/*.bpf.c declares the maps."""
import ctypes
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.read import contract
from monitor.read import readers
from monitor.export.metrics import MODES, REAP_CALLERS, REAP_RESULTS, RESULTS
from monitor.export.model import log2_histogram
from monitor.plan import coverage
from monitor.read.readers import build_snapshot

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"

# The sizes of the core_stats record's fields and of oom.bpf.c's arrays, as readers see them.
CORE_SIZES = {"invalidate_starts": 8, "unattributed_failures": 8, "invalidations_by_event": 16,
              "invalidate_start_latency": 128, "invalidate_start_latency_sum_ns": 2, "invalidate_ends": 1,
              "unpaired_starts": 1}
SIZES = {**CORE_SIZES, "oom_victims": 1, "oom_reap_attempts": 3, "oom_reap_calls": 9, "oom_reaper_gave_up": 1,
         "oom_reap_latency": 64, "oom_reap_latency_sum_ns": 1, "oom_held_mm_latency": 64,
         "oom_held_mm_latency_sum_ns": 1, "events_lost": 1}


def bpf_arrays():
    """{map name: entries} of every u64 BPF_PERCPU_ARRAY, its size expression evaluated with mnmon.h's defines."""
    out = {}
    for path in sorted(BPF_DIR.glob("*.bpf.c")):
        for name, expr in re.findall(r"^BPF_PERCPU_ARRAY\((\w+),\s*u64,\s*([^)]+)\);", path.read_text(), re.M):
            out[name] = eval(re.sub(r"[A-Z_]+", lambda m: str(contract.DEFINES[m.group(0)]), expr))  # noqa: S307
    return out


def test_sizes_are_the_bpf_maps_sizes():
    assert bpf_arrays() == {k: v for k, v in SIZES.items() if k not in CORE_SIZES}
    assert set(readers.ARRAYS) == set(SIZES) - set(CORE_SIZES)
    assert {f: ctypes.sizeof(t) // 8 for f, t in contract.CoreStats._fields_} == CORE_SIZES
    assert readers.CORE_STATS == tuple(CORE_SIZES)
    text = (BPF_DIR / "invalidate.bpf.c").read_text()
    assert re.search(r"^BPF_PERCPU_ARRAY\(core_stats, struct core_stats, 1\);", text, re.M)
    assert contract.NR_LAT_SLOTS * len(MODES) == SIZES["invalidate_start_latency"]
    assert len(MODES) * len(RESULTS) == SIZES["invalidate_starts"]
    assert len(REAP_CALLERS) * len(REAP_RESULTS) == SIZES["oom_reap_calls"]


def test_hash_keys_are_the_contracts_key_structs():
    text = (BPF_DIR / "notifiers.bpf.c").read_text()
    fields = lambda struct: tuple(f for f, _ in struct._fields_ if f != "pad")
    assert readers.NOTIFIER_KEY == fields(contract.NotifierKey)
    assert fields(contract.NotifierCalls) == ("count", "sum_ns")
    assert readers.HASHES["notifier_latency"] == fields(contract.NotifierLatKey)
    assert re.search(r"BPF_PERCPU_HASH\(notifier_invalidations, struct notifier_key, struct notifier_calls,", text)
    assert re.search(r"BPF_PERCPU_HASH\(notifier_latency, struct notifier_lat_key, u64,", text)


def test_core_stats_sums_each_field_over_cpus():
    Record = type("Record", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_uint64 * n) for f, n in CORE_SIZES.items()]})
    per_cpu = (Record * 2)()
    per_cpu[0].invalidate_starts[4] = 3
    per_cpu[1].invalidate_starts[4] = 4
    per_cpu[1].invalidate_start_latency[127] = 1
    per_cpu[0].invalidate_ends[0] = 2 ** 40
    got = readers.core_stats(per_cpu)
    assert {f: len(v) for f, v in got.items()} == CORE_SIZES
    assert got["invalidate_starts"] == [0, 0, 0, 0, 7, 0, 0, 0]
    assert got["invalidate_start_latency"][127] == 1 and sum(got["invalidate_start_latency"]) == 1
    assert got["invalidate_ends"] == [2 ** 40]


def test_notifier_calls_split_into_counts_and_sums_by_ip_and_mode():
    Key = type("Key", (ctypes.Structure,), {"_fields_": [("ip", ctypes.c_uint64), ("kind", ctypes.c_uint8),
                                                          ("mode", ctypes.c_uint8), ("result", ctypes.c_uint8)]})
    Calls = type("Calls", (ctypes.Structure,), {"_fields_": [("count", ctypes.c_uint64), ("sum_ns", ctypes.c_uint64)]})

    def per_cpu(*pairs):
        return (Calls * len(pairs))(*(Calls(*p) for p in pairs))
    items = [(Key(KVM_START, 0, 0, 0), per_cpu((2, 200), (3, 300))),
             (Key(KVM_START, 0, 0, 1), per_cpu((1, 50), (0, 0))),      # same ip and mode, another result
             (Key(KVM_START, 0, 1, 0), per_cpu((0, 0), (4, 4000)))]
    assert readers.notifier_calls(items) == {
        "notifier_invalidations": {(KVM_START, 0, 0, 0): 5, (KVM_START, 0, 0, 1): 1, (KVM_START, 0, 1, 0): 4},
        "notifier_latency_sum_ns": {(KVM_START, 0): 550, (KVM_START, 1): 4000}}


def test_events_match_enum_mmu_notifier_event():
    # KERNEL_NOTES: UNMAP=0, CLEAR, PROTECTION_VMA, PROTECTION_PAGE, SOFT_DIRTY, RELEASE, MIGRATE, EXCLUSIVE=7
    assert contract.MMU_NOTIFY_EVENTS == ("unmap", "clear", "protection_vma", "protection_page", "soft_dirty", "release",
                              "migrate", "exclusive")


@dataclass
class Status:
    probe: str
    method: str
    attached: bool


# Callback addresses as a kprobe's ip gives them: entry + 1.
KVM_START, KVM_START_2 = 0xffffffffc0a00001, 0xffffffffc0a00011
KVM_END, NOUVEAU = 0xffffffffc0a00101, 0xffffffffc0b00001
SYMS = {KVM_START: ("kvm_mmu_notifier_invalidate_range_start", "kvm"),
        NOUVEAU - 1: ("nouveau_svm_range_invalidate", "nouveau"),           # the function's own address
        KVM_START_2: ("kvm_mmu_notifier_invalidate_range_start", "kvm"),    # same function, another ip
        KVM_END: ("kvm_mmu_notifier_invalidate_range_end", "kvm"),
        NOUVEAU: ("nouveau_svm_range_invalidate", "nouveau")}


def resolve(ip):
    return SYMS.get(ip, ("unknown", "unknown"))


def zeros():
    raw = {name: [0] * n for name, n in SIZES.items()}
    raw.update(notifier_invalidations={}, notifier_latency={}, notifier_latency_sum_ns={}, notifier_ends={},
               oom_reap_blocked={})
    return raw


def raw_maps():
    raw = zeros()
    raw["invalidate_starts"] = [100, 2, 1, 0, 50, 7, 3, 0]    # [mode][result]
    raw["invalidations_by_event"][0] = 120
    raw["invalidations_by_event"][1] = 5
    raw["invalidations_by_event"][9] = 4                       # an event this mnmon has no name for
    raw["invalidate_ends"] = [140]
    raw["invalidate_start_latency"][9] = 3                     # blockable
    raw["invalidate_start_latency"][12] = 2
    raw["invalidate_start_latency"][64 + 40] = 1               # nonblockable, beyond 8.6 s
    raw["invalidate_start_latency_sum_ns"] = [123456, 2_000_000_000_000]
    raw["unpaired_starts"] = [2]
    raw["unattributed_failures"] = [0, 1, 0, 0, 0, 2, 0, 0]
    raw["notifier_invalidations"] = {(KVM_START, 0, 0, 0): 90, (KVM_START, 0, 1, 0): 40,
                                     (KVM_START_2, 0, 1, 0): 5, (NOUVEAU, 1, 1, 1): 6, (NOUVEAU, 1, 0, 0): 10,
                                     (NOUVEAU - 1, 1, 1, 3): 2}     # counted by the core probes: no time
    raw["notifier_latency"] = {(KVM_START, 0, 10): 90, (KVM_START, 1, 11): 40, (KVM_START_2, 1, 11): 5,
                               (NOUVEAU, 1, 20): 6, (NOUVEAU, 0, 9): 10}
    raw["notifier_latency_sum_ns"] = {(KVM_START, 0): 90_000, (KVM_START, 1): 80_000, (KVM_START_2, 1): 11_000,
                                      (NOUVEAU, 1): 6_000_000, (NOUVEAU, 0): 5_000}
    raw["notifier_ends"] = {KVM_END: 140}
    raw["oom_victims"] = [3]
    raw["oom_reap_attempts"] = [4, 2, 1]
    raw["oom_reap_calls"] = [4, 2, 0, 1, 0, 0, 3, 1, 0]        # [caller][result]
    raw["oom_reaper_gave_up"] = [1]
    raw["oom_reap_blocked"] = {NOUVEAU: 2, 0: 1}
    raw["oom_reap_latency"][20] = 4
    raw["oom_reap_latency"][25] = 1
    raw["oom_reap_latency_sum_ns"] = [9_000_000]
    raw["events_lost"] = [6]
    return raw


ATTACHED = [("kvm_mmu_notifier_invalidate_range_start", "kvm", "list"),
            ("kvm_mmu_notifier_invalidate_range_end", "kvm", "list_end"),
            ("nouveau_svm_range_invalidate", "nouveau", "interval"),
            ("hfi1_mmu_invalidate_range_start", "hfi1", "list")]
STATUSES = [Status("invalidate_range_start", "fentry", True), Status("invalidate_range_end", "fentry", True),
            Status("interval_notifier_insert", "", False), Status("oom:mark_victim", "tracepoint", True),
            Status("oom:skip_task_reaping", "tracepoint", True), Status("oom_reap_task_mm", "fentry", True),
            Status("oom_reaper_gave_up", "kprobe", True),
            Status("notifier:kvm_mmu_notifier_invalidate_range_start", "kprobe", True)]


@pytest.fixture
def snap():
    return build_snapshot(raw_maps(), resolve, ATTACHED, STATUSES)


def test_core_starts(snap):
    assert snap.family("mnmon_invalidate_range_start_total") == [
        ({"mode": "blockable", "result": "eagain"}, 2), ({"mode": "blockable", "result": "error"}, 1),
        ({"mode": "blockable", "result": "ok"}, 100), ({"mode": "nonblockable", "result": "eagain"}, 7),
        ({"mode": "nonblockable", "result": "error"}, 3), ({"mode": "nonblockable", "result": "ok"}, 50)]


def test_core_events_ends_in_progress_unpaired(snap):
    assert snap.family("mnmon_invalidations_total") == [
        ({"event": "9"}, 4), ({"event": "clear"}, 5), ({"event": "exclusive"}, 0), ({"event": "migrate"}, 0),
        ({"event": "protection_page"}, 0), ({"event": "protection_vma"}, 0), ({"event": "release"}, 0),
        ({"event": "soft_dirty"}, 0), ({"event": "unmap"}, 120)]
    assert snap.get("mnmon_invalidate_range_end_total") == 140
    assert snap.get("mnmon_invalidations_in_progress") == 10          # ok starts 100 + 50 - 140 ends
    assert snap.get("mnmon_unpaired_invalidate_starts_total") == 2


def test_in_progress_is_never_negative():
    raw = raw_maps()
    raw["invalidate_ends"] = [151]          # ends of sections started before mnmon attached
    snap = build_snapshot(raw, resolve, [], STATUSES)
    assert snap.get("mnmon_invalidations_in_progress") == 0


def test_core_latency(snap):
    blockable = snap.get("mnmon_invalidate_range_start_duration_seconds", mode="blockable")
    assert blockable == log2_histogram({9: 3, 12: 2}, 123456)
    assert [n for _, n in blockable.buckets[:5]] == [3, 3, 3, 5, 5]
    assert blockable.buckets[-1] == (float("inf"), 5)
    assert blockable.sum == 0.000123456
    nonblockable = snap.get("mnmon_invalidate_range_start_duration_seconds", mode="nonblockable")
    assert [n for _, n in nonblockable.buckets] == [0] * 24 + [1]
    assert nonblockable.sum == 2000.0


def test_notifier_outcomes(snap):
    fam = {tuple(lbl[k] for k in ("notifier", "kind", "mode", "result")): v
           for lbl, v in snap.family("mnmon_notifier_invalidations_total")}
    assert {k: v for k, v in fam.items() if v} == {
        ("kvm_mmu_notifier_invalidate_range_start", "list", "blockable", "ok"): 90,
        ("kvm_mmu_notifier_invalidate_range_start", "list", "nonblockable", "ok"): 45,    # two ips, one function
        ("nouveau_svm_range_invalidate", "interval", "nonblockable", "eagain"): 6,
        ("nouveau_svm_range_invalidate", "interval", "blockable", "ok"): 10,
        ("nouveau_svm_range_invalidate", "interval", "nonblockable", "unobserved"): 2,
        ("unknown", "unknown", "blockable", "eagain"): 1,                                 # unattributed failures
        ("unknown", "unknown", "nonblockable", "eagain"): 2,
    }
    # every attached start callback has its six (mode, ok|eagain|error) series from the start;
    # unobserved ones only once there are some
    for notifier, kind in (("kvm_mmu_notifier_invalidate_range_start", "list"),
                           ("nouveau_svm_range_invalidate", "interval"), ("hfi1_mmu_invalidate_range_start", "list")):
        assert sorted(k[2:] for k in fam if k[:2] == (notifier, kind) and k[3] != "unobserved") == sorted(
            (m, r) for m in MODES for r in RESULTS if r != "unobserved")
    assert len(fam) == 21
    modules = {lbl["notifier"]: lbl["module"] for lbl, _ in snap.family("mnmon_notifier_invalidations_total")}
    assert modules == {"kvm_mmu_notifier_invalidate_range_start": "kvm", "nouveau_svm_range_invalidate": "nouveau",
                       "hfi1_mmu_invalidate_range_start": "hfi1", "unknown": "unknown"}


def test_notifier_ends(snap):
    assert snap.family("mnmon_notifier_invalidate_range_end_total") == [
        ({"module": "kvm", "notifier": "kvm_mmu_notifier_invalidate_range_end"}, 140)]


def test_notifier_latency(snap):
    def h(notifier, module, mode):
        return snap.get("mnmon_notifier_invalidation_duration_seconds", notifier=notifier, module=module, mode=mode)
    kvm = "kvm_mmu_notifier_invalidate_range_start"
    assert h(kvm, "kvm", "blockable") == log2_histogram({10: 90}, 90_000)
    assert h(kvm, "kvm", "nonblockable") == log2_histogram({11: 45}, 91_000)
    assert h("nouveau_svm_range_invalidate", "nouveau", "nonblockable") == log2_histogram({20: 6}, 6_000_000)
    assert h("nouveau_svm_range_invalidate", "nouveau", "blockable") == log2_histogram({9: 10}, 5_000)
    for mode in MODES:      # attached, never called: zero histograms exist
        assert h("hfi1_mmu_invalidate_range_start", "hfi1", mode) == log2_histogram({}, 0)
    assert h("kvm_mmu_notifier_invalidate_range_end", "kvm", "blockable") is None     # ends are not timed
    assert len(snap.family("mnmon_notifier_invalidation_duration_seconds")) == 6


def test_oom(snap):
    assert snap.get("mnmon_oom_victims_total") == 3
    assert snap.family("mnmon_oom_reap_attempts_total") == [
        ({"result": "notifier_blocked"}, 2), ({"result": "reaped"}, 4), ({"result": "skipped"}, 1)]
    assert snap.family("mnmon_oom_reap_calls_total") == [
        ({"caller": "exit_mmap", "result": "notifier_blocked"}, 1), ({"caller": "exit_mmap", "result": "reaped"}, 3),
        ({"caller": "oom_reaper", "result": "notifier_blocked"}, 2), ({"caller": "oom_reaper", "result": "reaped"}, 4),
        ({"caller": "process_mrelease", "result": "notifier_blocked"}, 0),
        ({"caller": "process_mrelease", "result": "reaped"}, 1)]
    assert snap.get("mnmon_oom_reaper_gave_up_total") == 1
    assert snap.family("mnmon_oom_reap_blocked_total") == [
        ({"module": "nouveau", "notifier": "nouveau_svm_range_invalidate"}, 2),
        ({"module": "unknown", "notifier": "unknown"}, 1)]
    reap = snap.get("mnmon_oom_reap_duration_seconds")
    assert reap == log2_histogram({20: 4, 25: 1}, 9_000_000)
    assert dict(reap.buckets)[0.002097152] == 4 and dict(reap.buckets)[0.067108864] == 5
    assert reap.sum == 0.009


UID, CID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "ab" * 32
CGROUPS = {11: f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
               f"cri-containerd-{CID}.scope",
           12: f"/kubepods/besteffort/pod{UID}/{CID}",
           13: "/system.slice/postgresql.service",
           14: "unknown", 15: "unknown"}


def test_tracked_victims_by_cgroup_pod_and_container():
    raw = {**raw_maps(), "oom_victims_by_cgroup": {11: 2, 12: 1, 13: 4, 14: 1, 15: 1}}
    snap = build_snapshot(raw, resolve, ATTACHED, STATUSES, cgroup_path=CGROUPS.get)
    assert {lbl.pop("cgroup"): (lbl, n) for lbl, n in snap.family("mnmon_oom_tracked_victims_total")} == {
        CGROUPS[11]: ({"pod_uid": UID, "container_id": CID}, 2),
        CGROUPS[12]: ({"pod_uid": UID, "container_id": CID}, 1),
        CGROUPS[13]: ({"pod_uid": "", "container_id": ""}, 4),
        "unknown": ({"pod_uid": "", "container_id": ""}, 2)}        # ids not named fold into one


def test_probe_attached_and_events_lost(snap):
    assert snap.family("mnmon_probe_attached") == [
        ({"method": "fentry", "probe": "invalidate_range_end"}, 1),
        ({"method": "fentry", "probe": "invalidate_range_start"}, 1),
        ({"method": "fentry", "probe": "oom_reap_task_mm"}, 1),
        ({"method": "kprobe", "probe": "notifier:kvm_mmu_notifier_invalidate_range_start"}, 1),
        ({"method": "kprobe", "probe": "oom_reaper_gave_up"}, 1),
        ({"method": "none", "probe": "interval_notifier_insert"}, 0),
        ({"method": "tracepoint", "probe": "oom:mark_victim"}, 1),
        ({"method": "tracepoint", "probe": "oom:skip_task_reaping"}, 1)]
    assert snap.get("mnmon_events_lost_total") == 6


CORE = ("mnmon_invalidate_range_start_total", "mnmon_invalidations_total", "mnmon_invalidate_range_end_total",
        "mnmon_invalidate_range_start_duration_seconds", "mnmon_invalidations_in_progress",
        "mnmon_unpaired_invalidate_starts_total", "mnmon_notifier_invalidations_total",
        "mnmon_notifier_invalidate_range_end_total", "mnmon_notifier_invalidation_duration_seconds")
OOM = ("mnmon_oom_victims_total", "mnmon_oom_reap_attempts_total", "mnmon_oom_reap_calls_total",
       "mnmon_oom_reaper_gave_up_total", "mnmon_oom_reap_blocked_total", "mnmon_oom_reap_duration_seconds")


def families(snap):
    return {name for name, _ in snap.series}


def test_everything_present_when_core_attached(snap):
    assert families(snap) == set(CORE + OOM) | {"mnmon_probe_attached", "mnmon_events_lost_total"}


@pytest.mark.parametrize("statuses, oom", [
    ([Status("invalidate_range_start", "kprobe", False), Status("oom:mark_victim", "tracepoint", True)],
     {"mnmon_oom_victims_total"}),
    ([Status("invalidate_range_end", "fentry", True)], set()),
    # a caller with maps only: all they hold
    ([], set(OOM) | {"mnmon_oom_premature_victims_total", "mnmon_oom_given_up_mm_held_seconds"}),
])
def test_core_families_absent_when_core_start_not_attached(statuses, oom):
    snap = build_snapshot(raw_maps(), resolve, ATTACHED, statuses)
    assert families(snap) == oom | {"mnmon_events_lost_total"} | ({"mnmon_probe_attached"} if statuses else set())


def test_reap_series_absent_where_the_reap_probe_did_not_attach():
    # Row 8 of the hardening issue: not measured must not read as "never happened".
    statuses = [Status("oom:mark_victim", "tracepoint", True), Status("oom:skip_task_reaping", "tracepoint", True),
                Status("oom_reap_task_mm", "kprobe", False), Status("oom_reaper_gave_up", "attempt-count", True)]
    snap = build_snapshot(raw_maps(), resolve, [], statuses)
    assert families(snap) & set(OOM) == {"mnmon_oom_victims_total", "mnmon_oom_reap_attempts_total",
                                         "mnmon_oom_reaper_gave_up_total"}
    assert snap.family("mnmon_oom_reap_attempts_total") == [({"result": "skipped"}, 1)]


def test_maps_compiled_out_without_structs():
    # HAVE_STRUCTS=0: only oom.bpf.c's maps and events_lost exist
    raw = {k: v for k, v in raw_maps().items() if k.startswith("oom_") or k == "events_lost"}
    snap = build_snapshot(raw, resolve, [], [Status("invalidate_range_start", "", False),
                                             Status("oom:mark_victim", "tracepoint", True)])
    assert families(snap) == {"mnmon_oom_victims_total", "mnmon_probe_attached", "mnmon_events_lost_total"}
    assert snap.get("mnmon_oom_victims_total") == 3


def test_all_zero_maps():
    snap = build_snapshot(zeros(), resolve, [], [Status("invalidate_range_start", "kprobe", True),
                                                 Status("invalidate_range_end", "kprobe", True),
                                                 Status("oom_reap_task_mm", "kprobe", True)])
    assert snap.get("mnmon_invalidations_in_progress") == 0
    assert len(snap.family("mnmon_invalidations_total")) == 8      # the named events, at 0
    assert snap.family("mnmon_notifier_invalidations_total") == []
    assert snap.family("mnmon_oom_reap_blocked_total") == []
    assert snap.get("mnmon_oom_reap_duration_seconds") == log2_histogram({}, 0)
    assert snap.get("mnmon_events_lost_total") == 0


def test_no_maps_at_all():
    snap = build_snapshot({}, resolve)
    assert snap.series == {("mnmon_events_lost_total", ()): 0}


def test_callbacks_of_unloaded_modules_fold_into_unknown():
    # Their addresses no longer resolve: counts, latency counts and sums all add up under "unknown".
    gone_a, gone_b = 0xffffffffc1000001, 0xffffffffc2000001
    raw = zeros()
    raw["notifier_invalidations"] = {(gone_a, 0, 1, 1): 3, (gone_b, 0, 1, 1): 4}
    raw["notifier_latency"] = {(gone_a, 1, 15): 3, (gone_b, 1, 15): 4}
    raw["notifier_latency_sum_ns"] = {(gone_a, 1): 100_000, (gone_b, 1): 150_000}
    snap = build_snapshot(raw, resolve, [], [Status("invalidate_range_start", "kprobe", True)])
    assert snap.family("mnmon_notifier_invalidations_total") == [
        ({"kind": "list", "mode": "nonblockable", "module": "unknown", "notifier": "unknown", "result": "eagain"}, 7)]
    h = snap.get("mnmon_notifier_invalidation_duration_seconds", notifier="unknown", module="unknown",
                 mode="nonblockable")
    assert h == log2_histogram({15: 7}, 250_000)
    assert h.count == 7


def test_an_unknown_blocker_is_never_resolved():
    # Address 0 in oom_reap_blocked means "no probed callback failed"; a resolver that names every
    # address (the nearest symbol below it) must not be asked to name it.
    raw = zeros()
    raw["oom_reap_blocked"] = {0: 3, NOUVEAU: 1}
    snap = build_snapshot(raw, lambda ip: ("nearest_symbol", "vmlinux"))
    assert snap.family("mnmon_oom_reap_blocked_total") == [
        ({"module": "unknown", "notifier": "unknown"}, 3), ({"module": "vmlinux", "notifier": "nearest_symbol"}, 1)]


def test_a_crowds_calls_without_a_callback_are_unattributed_not_resolved():
    # ip 0 in notifier_invalidations: a crowd's calls the walk could not name (bpf/attribute.bpf.c);
    # a resolver that names every address must not be asked.
    raw = zeros()
    raw["notifier_invalidations"] = {(0, 1, 0, 0): 37, (NOUVEAU, 1, 0, 0): 400}
    snap = build_snapshot(raw, lambda ip: ("nearest_symbol", "vmlinux"),
                          [], [Status("invalidate_range_start", "fentry", True)])
    assert snap.family("mnmon_notifier_invalidations_total") == [
        ({"kind": "interval", "mode": "blockable", "module": "unattributed", "notifier": "unattributed",
          "result": "ok"}, 37),
        ({"kind": "interval", "mode": "blockable", "module": "vmlinux", "notifier": "nearest_symbol",
          "result": "ok"}, 400)]


def test_lean_exports_what_it_measures_only():
    # one fexit on the core start: no latency, events or ends (an in-progress count would only grow)
    statuses = [Status("invalidate_range_start", "lean-fexit", True),
                Status("invalidate_range_end", "", False), Status("oom_reap_task_mm", "fentry", True)]
    snap = build_snapshot(raw_maps(), resolve, [], statuses, cov=coverage.measure(statuses, lean=True))
    got = families(snap)
    assert {"mnmon_invalidate_range_start_total", "mnmon_notifier_invalidations_total",
            "mnmon_unpaired_invalidate_starts_total"} <= got
    assert not got & {"mnmon_invalidate_range_start_duration_seconds", "mnmon_invalidations_total",
                      "mnmon_invalidate_range_end_total", "mnmon_invalidations_in_progress"}
    assert snap.get("mnmon_probe_attached", probe="invalidate_range_start", method="lean-fexit") == 1


def test_sample_report_of_lean_says_ends_are_not_counted():
    from monitor.cli import table as render
    statuses = [Status("invalidate_range_start", "lean-fexit", True), Status("invalidate_range_end", "", False)]
    text = render.table(build_snapshot(raw_maps(), resolve, [], statuses, cov=coverage.measure(statuses, lean=True)))
    assert "invalidate_range_start: blockable ok 100" in text
    assert "invalidate_range_end: not counted (lean)   unpaired starts:" in text


def test_the_list_hints_counts_add_to_the_hashes():
    from types import SimpleNamespace as H
    raw = {"notifier_invalidations": {(0x10, 0, 0, 0): 5, (0x10, 0, 1, 1): 2}, "notifier_ends": {0x20: 4}}
    kvm = H(own_start_fn=0x10, own_end_fn=0x20, starts=100, ends=99)
    other = H(own_start_fn=0x30, own_end_fn=0, starts=7, ends=0)
    unused = H(own_start_fn=0, own_end_fn=0, starts=0, ends=0)
    readers.hint_counts(raw, [[kvm, other], [unused, kvm]])      # two slots, two CPUs each
    # blockable ok calls of each slot's own start callback, and its end callback's calls
    assert raw["notifier_invalidations"] == {(0x10, 0, 0, 0): 205, (0x10, 0, 1, 1): 2, (0x30, 0, 0, 0): 7}
    assert raw["notifier_ends"] == {0x20: 202}
    assert readers.counted_addresses(raw) == {0x10, 0x20, 0x30}
