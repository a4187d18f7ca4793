"""The CLI's renderings of a Snapshot: the `sample --json` document and terminal tables."""
import datetime
import json

from monitor.export.metrics import MODES, RESULTS

# `mnmon sample --json`'s layout; raised when a key is renamed or removed or changes
# meaning (a key added is not a new version). The README describes version 1.
SCHEMA_VERSION = 1


def to_json(snapshot, start, end, duration, host):
    """The `sample --json` document: the window counted (start and end as wall-clock
    seconds, duration as measured), the host's facts (monitor.build.facts()) and the
    same series /metrics shows, as [{"name", "labels", "value"}]."""
    return json.dumps({
        "schema_version": SCHEMA_VERSION,
        "window": {"start": _utc(start), "end": _utc(end), "duration_seconds": round(duration, 3)},
        "host": {"hostname": host["hostname"], "kernel": host["kernel"], "mnmon_version": host["mnmon"],
                 "build": host["build"], "bcc_version": host["bcc"]},
        "series": [{"name": n, "labels": l, "value": v} for n, l, v in snapshot.flat()],
    }, indent=1)


def _utc(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def quantile(q, buckets):
    """histogram_quantile() of cumulative (le, count) buckets; None without observations."""
    total = buckets[-1][1]
    if not total:
        return None
    rank = q * total
    prev_le, prev_n = 0.0, 0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 0)
        prev_le, prev_n = le, n
    return prev_le


def fmt_seconds(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g}{unit}"
    return f"{s / 1e-9:.3g}ns"


def log2_lines(buckets, width=40):
    """A bcc-style log2 histogram of cumulative (le seconds, count) buckets; the
    buckets are powers of two of nanoseconds, so bounds print as durations."""
    per = []
    prev = 0
    lo = 0.0
    for le, n in buckets:
        if le != float("inf"):
            per.append((lo, le, n - prev))
        lo, prev = le, n
    per = [p for p in per if p[2]] and per
    if not per:
        return []
    first = next(i for i, p in enumerate(per) if p[2])
    last = max(i for i, p in enumerate(per) if p[2])
    top = max(p[2] for p in per)
    out = [f"{'duration':>22} : count     distribution"]
    for lo, hi, n in per[first:last + 1]:
        bar = "*" * round(width * n / top)
        out.append(f"{fmt_seconds(lo) if lo else '0':>9} -> {fmt_seconds(hi):<9} : {n:<9} |{bar:<{width}}|")
    return out


def _table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(headers)] + [line(r) for r in rows]


def table(snapshot, histograms=True):
    """The `mnmon sample` report: core, per notifier, OOM reaper, probes."""
    out = []
    v = lambda name, **l: int(snapshot.get(name, **l) or 0)
    if snapshot.family("mnmon_invalidate_range_start_total"):
        out.append("invalidate_range_start: " + ", ".join(
            f"{m} {r} {v('mnmon_invalidate_range_start_total', mode=m, result=r)}" for m in MODES for r in RESULTS
            if v("mnmon_invalidate_range_start_total", mode=m, result=r) or r == "ok"))
        ends = (f"{v('mnmon_invalidate_range_end_total')}   in progress: {v('mnmon_invalidations_in_progress')}"
                if snapshot.get("mnmon_invalidate_range_end_total") is not None else "not counted (lean)")
        out.append(f"invalidate_range_end: {ends}   unpaired starts: {v('mnmon_unpaired_invalidate_starts_total')}")
        out.append("")
        out += _notifier_table(snapshot)
    else:
        out.append("invalidations: not measured on this kernel (see `mnmon doctor`)")
    out.append("")
    out += _oom_lines(snapshot)
    if histograms:
        for labels, h in snapshot.family("mnmon_notifier_invalidation_duration_seconds"):
            lines = log2_lines(h.buckets)
            if lines:
                out += ["", f"{labels['notifier']} [{labels['module']}] {labels['mode']} latency:"] + lines
    return "\n".join(out)


def _notifier_table(snapshot):
    rows = {}
    for labels, value in snapshot.family("mnmon_notifier_invalidations_total"):
        key = (labels["notifier"], labels["module"], labels["kind"])
        rows.setdefault(key, {})[(labels["mode"], labels["result"])] = int(value)
    lat = {(l["notifier"], l["module"], l["mode"]): h
           for l, h in snapshot.family("mnmon_notifier_invalidation_duration_seconds")}
    # unobserved (calls counted before a notifier's probes attached, outcome unknown): only when some are
    results = [r for r in RESULTS if r != "unobserved" or any(c.get((m, r)) for c in rows.values() for m in MODES)]
    body = []
    for (name, module, kind), c in sorted(rows.items()):
        cells = [name, module, kind]
        cells += [c.get((m, r), 0) for m in MODES for r in results]
        for mode in MODES:
            h = lat.get((name, module, mode))
            cells += [fmt_seconds(quantile(0.5, h.buckets)) if h else "-",
                      fmt_seconds(quantile(0.99, h.buckets)) if h else "-"]
        body.append(cells)
    if not body:
        return ["no notifier callbacks attached"]
    short = {"blockable": "blk", "nonblockable": "nonblk", "error": "err", "unobserved": "unobs"}
    heads = ["notifier", "module", "kind"] + [f"{short[m]} {short.get(r, r)}" for m in MODES for r in results] + \
        ["blk p50", "blk p99", "nonblk p50", "nonblk p99"]
    return _table(heads, body)


def _oom_lines(snapshot):
    v = lambda name, **l: int(snapshot.get(name, **l) or 0)
    if snapshot.get("mnmon_oom_victims_total") is None:
        return ["OOM reaper: not measured"]
    out = [f"OOM victims: {v('mnmon_oom_victims_total')}   reap attempts: "
           + ", ".join(f"{r} {v('mnmon_oom_reap_attempts_total', result=r)}"
                       for r in ("reaped", "notifier_blocked", "skipped"))
           + f"   gave up: {v('mnmon_oom_reaper_gave_up_total')}"]
    for labels, n in snapshot.family("mnmon_oom_reap_blocked_total"):
        out.append(f"  reaper blocked by {labels['notifier']} [{labels['module']}]: {int(n)} attempts")
    return out + _premature_lines(snapshot)


def _premature_lines(snapshot):
    """Victims chosen while a given-up victim's memory was held (absent: not countable here)."""
    family = snapshot.family("mnmon_oom_premature_victims_total")
    if not family:
        return ["premature victims: not countable here (see `mnmon doctor`)"]
    held = snapshot.get("mnmon_oom_given_up_mm_held_seconds")
    out = [f"premature victims: {int(sum(n for _, n in family))}   given-up memory held: "
           + (f"{held.count} times, p50 {fmt_seconds(quantile(0.5, held.buckets))}, "
              f"p99 {fmt_seconds(quantile(0.99, held.buckets))}" if held and held.count else "none")]
    for labels, n in family:
        if n:
            out.append(f"  premature, earlier reap blocked by {labels['notifier']} [{labels['module']}]: {int(n)}")
    return out
