"""RESULTS.json: one bench run's figures for programs to read (`python -m bench.compare`,
the kernel matrix's table in bed/bench_table.py), beside RESULTS.md, which is for people.

    {"kernel": release, "date": ...,
     "instructions_per_invalidation": {"mode/method[variant]/state": n},   # bench.compare
     "configurations": {name: {"instructions": {mode: {"off", "core", "full", "ratio",
                                                        "repeat", "runs"}}}
                              or {"not_run": why}},
     "footprint": {"start_s", "rss_before_mb", "rss_start_mb", "rss_hour_mb",
                   "rss_trimmed_mb", "scrapes", "idle_cpu_pct", "scrape_ms"},
     "exactness": {...}}
"""
import json

# The configurations the matrix table has a column for: the default (latency sampled),
# latency always (the default's path in a window), every probe (latency full), lean, counts.
DEFAULT, ALWAYS, EVERY_PROBE, LEAN, COUNTS = "default", "latency always", "every probe", "lean", "counts"


def configuration(results, share=None):
    """A configuration's instruction figures from its {mode: bench.overhead.ModeResult}:
    {mode: {'off', 'core', 'full': instructions per invalidation, 'ratio': full / off}};
    modes without counts (no insncount plugin) are left out. share: the build times
    callbacks that fraction of the time (probes.latency: sampled): 'core' is between
    windows, 'full' in one, and 'ratio' their mean weighted by time (sampled_ratio())."""
    out = {}
    for mode, r in results.items():
        if not r.insns:
            continue
        fig = {s: round(r.insns_of(s), 1) for s in r.insns}
        fig["ratio"] = round(r.insn_ratio("full") if share is None else sampled_ratio(r, share), 6)
        if share is not None:
            fig["share"] = round(share, 6)
            fig["window_ratio"] = round(r.insn_ratio("full"), 6)
        # How far apart each state's least two runs are, the widest: a figure is a count
        # the runs repeat only when this is small (bench: INSN_REPEAT).
        widest = max(r.insn_agreement(s) for s in r.insns)
        fig["repeat"] = round(widest, 4) if widest != float("inf") else None     # one run: unknown
        fig["runs"] = {s: [round(x) for x in v] for s, v in r.insns.items()}
        out[mode] = fig
    return {"method": next(iter(results.values())).method if results else "",
            "instructions": out}


def sampled_ratio(r, share):
    """Instructions with mnmon / without, over time, of a build whose callbacks are timed a
    share of the time: between windows the path runs its 'core' state (every probe but the
    callbacks'), in a window its 'full' one."""
    return ((1 - share) * r.insns_of("core") + share * r.insns_of("full")) / r.insns_of("off")


def not_run(why):
    """A configuration this run did not measure, and why (a few words for the table)."""
    return {"not_run": why}


def same_as(config, name):
    """config measured once and reported under another name too (every probe, today the default)."""
    return dict(config, same_run_as=name)


def footprint(start_s, rss_before, rss_start, rss_hour, rss_trimmed, scrapes, idle_pct, scrape_ms):
    """The daemon's start and footprint; rss_*: (VmRSS, anon, file) in MB (bench.footprint.rss_mb)."""
    return {"start_s": round(start_s, 1), "rss_before_mb": round(rss_before[0], 1),
            "rss_start_mb": round(rss_start[0], 1), "rss_hour_mb": round(rss_hour[0], 1),
            "rss_trimmed_mb": round(rss_trimmed[0], 1), "scrapes": scrapes,
            "idle_cpu_pct": round(idle_pct, 3), "scrape_ms": round(scrape_ms, 1)}


def document(kernel, date, figures, summary):
    """The file's text. summary: what bench's kernel run filled in (configurations,
    footprint, exactness); empty for a run without the kernel parts (--only scrape)."""
    doc = {"kernel": kernel, "date": date, "instructions_per_invalidation": figures}
    doc.update(summary)
    return json.dumps(doc, indent=1) + "\n"
