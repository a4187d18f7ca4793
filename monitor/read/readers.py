"""BPF maps -> Snapshot. read_raw() is the only part that touches bcc; build_snapshot()
is pure and takes plain lists and dicts (unit-tested on literals).

Series emitted (see monitor/export/metrics.py): mnmon_invalidate_range_start_total{mode,result},
mnmon_invalidations_total{event}, mnmon_invalidate_range_end_total,
mnmon_invalidate_range_start_duration_seconds{mode}, mnmon_invalidations_in_progress,
mnmon_unpaired_invalidate_starts_total, mnmon_notifier_invalidations_total{notifier,module,kind,mode,result},
mnmon_notifier_invalidate_range_end_total{notifier,module},
mnmon_notifier_invalidation_duration_seconds{notifier,module,mode}, mnmon_oom_victims_total,
mnmon_oom_tracked_victims_total{cgroup,pod_uid,container_id}, mnmon_oom_reap_attempts_total{result},
mnmon_oom_reap_calls_total{caller,result}, mnmon_oom_reaper_gave_up_total, mnmon_oom_reap_blocked_total{notifier,module},
mnmon_oom_reap_duration_seconds, mnmon_oom_premature_victims_total{notifier,module},
mnmon_oom_given_up_mm_held_seconds, mnmon_probe_attached{probe,method}, mnmon_events_lost_total.
"""
import ctypes
from dataclasses import dataclass
from typing import Callable

from monitor.read import contract, kubepods
from monitor.plan import coverage
from monitor.read.contract import KINDS, MMU_NOTIFY_EVENTS, MODES, NR_LAT_SLOTS, REAP_CALLERS, REAP_RESULTS, RESULTS
from monitor.plan.coverage import Coverage
from monitor.export.metrics import HELD_BUCKETS
from monitor.export.model import Snapshot, log2_histogram

UNKNOWN = ("unknown", "unknown")
# Calls the core probes counted without a callback (ip 0): a crowd of interval notifiers
# over one range with more callbacks than the walk counts apart (bpf/attribute.bpf.c).
UNATTRIBUTED = ("unattributed", "unattributed")
END_KIND = KINDS[contract.DEFINES["KIND_LIST_END"]]     # counted, never timed

ARRAYS = ("oom_victims", "oom_reap_attempts", "oom_reap_calls", "oom_reaper_gave_up", "oom_reap_latency",
          "oom_reap_latency_sum_ns", "oom_held_mm_latency", "oom_held_mm_latency_sum_ns", "events_lost")
# The core probes' counters: the u64[] fields of one per-CPU record, struct core_stats.
CORE_STATS = tuple(name for name, _ in contract.CoreStats._fields_)
HASHES = {"notifier_latency": ("ip", "mode", "slot"), "notifier_ends": None, "oom_reap_blocked": None,
          "oom_victims_by_cgroup": None, "oom_premature_victims": None}
# notifier_invalidations: struct notifier_key -> struct notifier_calls {count, sum_ns}.
NOTIFIER_KEY = ("ip", "kind", "mode", "result")


# The core start's own return says ok, eagain or error, never unobserved.
CORE_RESULTS = tuple(r for r in RESULTS if r != "unobserved")


def _total(leaf):
    try:
        return sum(int(getattr(v, "value", v)) for v in leaf)   # per-CPU values
    except TypeError:
        return int(getattr(leaf, "value", leaf))


# list_hints: the counts configuration's per-CPU hints, which count one start and one end
# callback each in place of the hashes (bpf/attribute.bpf.c, struct list_hint).
ALL_MAPS = ARRAYS + tuple(HASHES) + ("core_stats", "notifier_invalidations", "list_hints")
LIST_OK = tuple(contract.DEFINES[d] for d in ("KIND_LIST", "MODE_BLOCKABLE", "RESULT_OK"))


def read_raw(bpf, maps=ALL_MAPS):
    """The counting maps named (default: all) of the loaded program as plain Python: per-CPU
    values summed. Maps the program was compiled without (HAVE_STRUCTS=0) are absent."""
    tables = {}
    for name in maps:
        try:
            tables[name] = bpf[name.encode()]   # bcc warns on str names
        except KeyError:
            continue
    raw = {name: [_total(v) for v in _array_values(tables[name])] for name in ARRAYS if name in tables}
    for name, fields in HASHES.items():
        if name in tables:
            raw[name] = {(tuple(getattr(k, f) for f in fields) if fields else k.value): _total(v)
                         for k, v in tables[name].items()}
    if "core_stats" in tables:
        raw.update(core_stats(tables["core_stats"][ctypes.c_int(0)]))
    if "notifier_invalidations" in tables:
        raw.update(notifier_calls(tables["notifier_invalidations"].items()))
    if "list_hints" in tables:
        hint_counts(raw, (tables["list_hints"][ctypes.c_int(i)] for i in range(len(tables["list_hints"]))))
    return raw


def hint_counts(raw, slots):
    """Add the calls the list hints counted (each slot's per-CPU struct list_hint copies) to
    raw's notifier_invalidations (blockable, ok) and notifier_ends."""
    calls, ends = raw.setdefault("notifier_invalidations", {}), raw.setdefault("notifier_ends", {})
    for per_cpu in slots:
        for h in per_cpu:
            if h.own_start_fn and h.starts:
                key = (h.own_start_fn, *LIST_OK)
                calls[key] = calls.get(key, 0) + h.starts
            if h.own_end_fn and h.ends:
                ends[h.own_end_fn] = ends.get(h.own_end_fn, 0) + h.ends


def counted_addresses(raw):
    """Every callback address read_raw() found counts for."""
    ips = {k[0] for k in raw.get("notifier_invalidations", {})}
    ips |= {k[0] for k in raw.get("notifier_latency", {})}
    ips |= set(raw.get("notifier_ends", {})) | {ip for ip in raw.get("oom_reap_blocked", {}) if ip}
    ips |= {ip for ip in raw.get("oom_premature_victims", {}) if ip}
    return ips


def core_starts(bpf):
    """How many core starts ran (every mode and result, all CPUs): one per-CPU read."""
    return sum(sum(v.invalidate_starts) for v in bpf[b"core_stats"][ctypes.c_int(0)])


def core_stats(per_cpu):
    """{field: its entries summed over CPUs} of the core_stats record's per-CPU copies."""
    return {f: [sum(col) for col in zip(*(getattr(v, f) for v in per_cpu))] for f in CORE_STATS}


def notifier_calls(items):
    """notifier_invalidations' (key, per-CPU {count, sum_ns}) pairs as raw's
    notifier_invalidations {(ip, kind, mode, result): count} and
    notifier_latency_sum_ns {(ip, mode): ns}."""
    counts, sums = {}, {}
    for k, per_cpu in items:
        key = tuple(getattr(k, f) for f in NOTIFIER_KEY)
        counts[key] = counts.get(key, 0) + sum(v.count for v in per_cpu)
        ip_mode = (key[0], key[2])
        sums[ip_mode] = sums.get(ip_mode, 0) + sum(v.sum_ns for v in per_cpu)
    return {"notifier_invalidations": counts, "notifier_latency_sum_ns": sums}


def _array_values(table):
    """An array map's values in index order: one BPF_MAP_LOOKUP_BATCH (5.6+) instead of a
    lookup per index, the bulk of a scrape's syscalls (~240 of them)."""
    try:
        got = list(table.items_lookup_batch())
    except Exception:                   # noqa: BLE001 -- bcc raises bare Exception; older kernels
        got = []
    if len(got) != len(table):
        return table.values()
    return [v for _, v in sorted(got, key=lambda kv: int(getattr(kv[0], "value", kv[0])))]


def _slots(values):
    return {s: n for s, n in enumerate(values[:NR_LAT_SLOTS]) if n}


@dataclass(frozen=True)
class Context:
    """What turning maps into series needs besides the maps."""
    resolve: Callable                       # ip -> (symbol, module)
    attached_callbacks: tuple = ()          # (symbol, module, kind name) whose series exist at 0 from the start
    coverage: Coverage = None               # what this run measures
    cgroup_path: Callable = lambda cgroup_id: "unknown"     # cgroup v2 id -> its path
    extra_lost: Callable = lambda: 0        # events lost outside the maps (perf buffer, kretprobes)


def build_snapshot(raw, resolve, attached_callbacks=(), statuses=(), cgroup_path=lambda cgroup_id: "unknown",
                   cov=None):
    """Snapshot of raw map contents, every concern at once (each is also read alone: see
    monitor/read/reading.py).

    resolve(ip) -> (symbol, module); attached_callbacks: [(symbol, module, kind name)]
    whose series exist at 0 from the start; statuses: ProbeStatus-like (probe, method, attached);
    cov: the run's coverage.Coverage (default: measured from statuses);
    cgroup_path(cgroup v2 id) -> its path.
    """
    s = Snapshot()
    ctx = Context(resolve, tuple(attached_callbacks), cov or coverage.measure(statuses), cgroup_path)
    for concern in CONCERNS.values():
        concern.build(s, raw, ctx)
    probes_attached(s, statuses)
    return s


def probes_attached(s, statuses):
    for st in statuses:
        s.set("mnmon_probe_attached", 1 if st.attached else 0, probe=st.probe, method=st.method or "none")


def _invalidations(s, raw, ctx):
    cov = ctx.coverage
    if "invalidate_starts" not in raw or not cov.counted:
        return
    starts = raw["invalidate_starts"]
    for m, mode in enumerate(MODES):
        for result in CORE_RESULTS:
            s.set("mnmon_invalidate_range_start_total", contract.at(starts, mode, result), mode=mode, result=result)
        if cov.measures("mnmon_invalidate_range_start_duration_seconds"):
            s.set("mnmon_invalidate_range_start_duration_seconds",
                  log2_histogram(contract.slots(raw["invalidate_start_latency"], mode),
                                 raw["invalidate_start_latency_sum_ns"][m]), mode=mode)
    if cov.measures("mnmon_invalidations_total"):
        for e, n in enumerate(raw["invalidations_by_event"]):
            if n or e < len(MMU_NOTIFY_EVENTS):
                s.set("mnmon_invalidations_total", n,
                      event=MMU_NOTIFY_EVENTS[e] if e < len(MMU_NOTIFY_EVENTS) else str(e))
    # The lean configuration counts no ends: an in-progress count would only grow.
    if cov.measures("mnmon_invalidate_range_end_total"):
        ends = raw["invalidate_ends"][0]
        s.set("mnmon_invalidate_range_end_total", ends)
        ok = sum(contract.at(starts, mode, "ok") for mode in MODES)
        s.set("mnmon_invalidations_in_progress", max(0, ok - ends))
    s.set("mnmon_unpaired_invalidate_starts_total", raw["unpaired_starts"][0])


def _events(s, raw, ctx):
    s.set("mnmon_events_lost_total", raw.get("events_lost", [0])[0] + ctx.extra_lost())


def _notifiers(s, raw, ctx):
    if "unattributed_failures" not in raw or not ctx.coverage.measures("mnmon_notifier_invalidations_total"):
        return
    resolve, attached_callbacks = ctx.resolve, ctx.attached_callbacks
    for symbol, module, kind in attached_callbacks:
        if kind == END_KIND:
            s.set("mnmon_notifier_invalidate_range_end_total", 0, notifier=symbol, module=module)
            continue
        for mode in MODES:
            for result in CORE_RESULTS:     # unobserved calls are rare: a series once there are some
                s.set("mnmon_notifier_invalidations_total", 0, notifier=symbol, module=module, kind=kind,
                      mode=mode, result=result)
    for (ip, kind, mode, result), n in raw.get("notifier_invalidations", {}).items():
        name, module = resolve(ip) if ip else UNATTRIBUTED
        s.add("mnmon_notifier_invalidations_total", n, notifier=name, module=module, kind=KINDS[kind],
              mode=MODES[mode], result=RESULTS[result])
    # Failed starts no notifier was named for: an explicit "unknown" notifier, never dropped.
    for mode in MODES:
        for result in RESULTS:
            n = contract.at(raw["unattributed_failures"], mode, result)
            if n:
                s.add("mnmon_notifier_invalidations_total", n, notifier="unknown", module="unknown",
                      kind="unknown", mode=mode, result=result)
    for ip, n in raw.get("notifier_ends", {}).items():
        name, module = resolve(ip)
        s.add("mnmon_notifier_invalidate_range_end_total", n, notifier=name, module=module)
    slots, sums = {}, {}
    for (ip, mode, slot), n in raw.get("notifier_latency", {}).items():
        sl = slots.setdefault((resolve(ip), mode), {})
        sl[slot] = sl.get(slot, 0) + n         # several ips can resolve to one function (or "unknown")
    for (ip, mode), ns in raw.get("notifier_latency_sum_ns", {}).items():
        sums[(resolve(ip), mode)] = sums.get((resolve(ip), mode), 0) + ns
    for symbol, module, kind in attached_callbacks:
        if kind != END_KIND:
            for m in range(len(MODES)):
                slots.setdefault(((symbol, module), m), {})
    for ((name, module), mode), sl in slots.items():
        s.set("mnmon_notifier_invalidation_duration_seconds", log2_histogram(sl, sums.get(((name, module), mode), 0)),
              notifier=name, module=module, mode=MODES[mode])


def _reaper(s, raw, ctx):
    # Each series only where a probe feeding it is attached (coverage): a 0 would say
    # "never happened" where the truth is "not watched" (mnmon_probe_attached says why).
    if "oom_victims" not in raw:
        return
    measures, resolve = ctx.coverage.measures, ctx.resolve
    if measures("mnmon_oom_victims_total"):
        s.set("mnmon_oom_victims_total", raw["oom_victims"][0])
    if measures("mnmon_oom_tracked_victims_total"):
        for cgroup_id, n in raw.get("oom_victims_by_cgroup", {}).items():
            path = ctx.cgroup_path(cgroup_id)
            s.add("mnmon_oom_tracked_victims_total", n, cgroup=path, **kubepods.labels(path))
    for r, result in enumerate(REAP_RESULTS):
        if measures("mnmon_oom_reap_attempts_total", result):
            s.set("mnmon_oom_reap_attempts_total", raw["oom_reap_attempts"][r], result=result)
    if measures("mnmon_oom_reap_calls_total"):
        for c, caller in enumerate(REAP_CALLERS):
            for r, result in enumerate(REAP_RESULTS[:2]):       # a skip is not a call
                s.set("mnmon_oom_reap_calls_total", raw["oom_reap_calls"][c * len(REAP_RESULTS) + r],
                      caller=caller, result=result)
        for ip, n in raw.get("oom_reap_blocked", {}).items():
            name, module = resolve(ip) if ip else UNKNOWN
            s.add("mnmon_oom_reap_blocked_total", n, notifier=name, module=module)
        s.set("mnmon_oom_reap_duration_seconds",
              log2_histogram(_slots(raw["oom_reap_latency"]), raw["oom_reap_latency_sum_ns"][0]))
    if measures("mnmon_oom_reaper_gave_up_total"):
        s.set("mnmon_oom_reaper_gave_up_total", raw["oom_reaper_gave_up"][0])


def _premature(s, raw, ctx):
    # Not countable (a probe it needs did not attach): no series, never a 0 (see coverage).
    if "oom_held_mm_latency" not in raw or not ctx.coverage.measures("mnmon_oom_premature_victims_total"):
        return
    premature = raw.get("oom_premature_victims", {})
    if not premature:       # the family exists at 0 from the start: "counted, none yet"
        s.set("mnmon_oom_premature_victims_total", 0, notifier="unknown", module="unknown")
    for ip, n in premature.items():
        name, module = ctx.resolve(ip) if ip else UNKNOWN
        s.add("mnmon_oom_premature_victims_total", n, notifier=name, module=module)
    s.set("mnmon_oom_given_up_mm_held_seconds",
          log2_histogram(_slots(raw["oom_held_mm_latency"]), raw["oom_held_mm_latency_sum_ns"][0], HELD_BUCKETS))


@dataclass(frozen=True)
class Concern:
    """One concern's maps and how they become series."""
    maps: tuple
    build: Callable         # (Snapshot, raw, Context) -> None


# Each read alone (monitor/read/reading.py): a map that cannot be read costs its concern's families only.
CONCERNS = {
    "invalidations": Concern(("core_stats",), _invalidations),
    "notifiers": Concern(("core_stats", "notifier_invalidations", "notifier_latency", "notifier_ends", "list_hints"),
                         _notifiers),
    "reaper": Concern(ARRAYS[:6] + ("oom_reap_blocked", "oom_victims_by_cgroup"), _reaper),
    "premature": Concern(("oom_premature_victims", "oom_held_mm_latency", "oom_held_mm_latency_sum_ns"),
                         _premature),
    "events": Concern(("events_lost",), _events),
}
