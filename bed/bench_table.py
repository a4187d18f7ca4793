"""The README's per-kernel benchmark table, written from the last bench matrix run
(build/bench/<release>/RESULTS.json and leg.json, bed/bench_matrix.py), never by hand.

    python -m bed.bench_table            # print it
    python -m bed.bench_table --write    # replace it in README.md
"""
import argparse
import json
import sys
from pathlib import Path

from bench.__main__ import INSN_REPEAT
from bench.results_json import ALWAYS, DEFAULT, EVERY_PROBE, LEAN
from bed import kernels, matrix_table

REPO = kernels.REPO
OUT = REPO / "build" / "bench"
BEGIN, END = "<!-- bench-matrix:begin -->", "<!-- bench-matrix:end -->"
ONE_PAGE, MULTI_PAGE = "kvm", "kvm:64"       # bench/churn.py's modes: KVM memory, 1 and 64 pages
# What a configuration's error says before its reason (monitor/plan/attach_plan.py).
CANNOT_RUN = "the lean configuration cannot run here: "


def _mmss(seconds):
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds is not None else "-"


def ratio_cell(config, mode):
    """A configuration's instruction ratio (with mnmon / without) for mode, or why there is none."""
    if config is None:
        return "not measured"
    if "not_run" in config:
        return "not run: " + config["not_run"].removeprefix(CANNOT_RUN)
    fig = config.get("instructions", {}).get(mode)
    if fig is None:
        return "KVM not in the guest" if mode.startswith("kvm") else f"{mode}: not measured"
    if "share" in fig:      # sampled latency: between windows, and in one
        cell = (f"{fig['ratio']:.3f} ({fig['off']:,.0f} -> {fig['core']:,.0f}; in a window, "
                f"{fig['share']:.1%} of the time, {fig['full']:,.0f})")
    else:
        cell = f"{fig['ratio']:.3f} ({fig['off']:,.0f} -> {fig['full']:,.0f})"
    if fig.get("repeat") is not None and fig["repeat"] > INSN_REPEAT:
        apart = 100 * fig["repeat"]
        cell += f"; runs did not repeat (least two {apart:.2f}% apart)" if apart < 10 else \
            f"; runs did not repeat (least two {apart:.0f}% apart)"
    return cell


def row(d):
    """One kernel's cells from its directory, or None when no leg of it ever ran."""
    leg_f = d / "leg.json"
    if not leg_f.exists():
        return None
    leg = json.loads(leg_f.read_text())
    res_f = d / "RESULTS.json"
    time_cell = f"{_mmss(leg.get('booted_seconds'))} ({leg['date']})"
    if not res_f.exists():
        why = "timed out" if leg["rc"] == 124 else f"rc {leg['rc']}"
        return [leg["release"], f"no figures: the leg failed ({why}; its log.txt says why)",
                *["-"] * 7, time_cell]
    res = json.loads(res_f.read_text())
    configs = res.get("configurations", {})
    fp = res.get("footprint")
    return [
        res["kernel"] + ("" if leg["rc"] == 0 else f" (leg rc {leg['rc']})"),
        ratio_cell(configs.get(DEFAULT), ONE_PAGE),
        ratio_cell(configs.get(ALWAYS), ONE_PAGE),
        ratio_cell(configs.get(EVERY_PROBE), ONE_PAGE),
        ratio_cell(configs.get(LEAN), ONE_PAGE),
        ratio_cell(configs.get(DEFAULT), MULTI_PAGE),
        f"{fp['start_s']:.1f} s" if fp else "-",
        f"{fp['rss_start_mb']:.0f} / {fp['rss_hour_mb']:.0f} MB" if fp else "-",
        f"{fp['idle_cpu_pct']:.2f} %" if fp else "-",
        time_cell,
    ]


def same_configuration_note(out=OUT):
    """The table's own word on whether 'every probe' was its own run or the default's."""
    shared = [json.loads(f.read_text())["configurations"][EVERY_PROBE].get("same_run_as") == DEFAULT
              for f in out.glob("*/RESULTS.json")
              if EVERY_PROBE in json.loads(f.read_text()).get("configurations", {})]
    if shared and all(shared):
        return ("The default configuration was every probe then: one build and one run give both "
                "columns.\n")
    return ""


def table(out=OUT):
    dirs = sorted((d for d in out.glob("*") if d.is_dir() and d.name in kernels.KERNELS),
                  key=lambda p: kernels.version_key(p.name))
    rows = [r for r in map(row, dirs) if r]
    head = ("| kernel | one-page KVM invalidation, instructions with / without mnmon: default | latency always | "
            "every probe | lean | 64 pages, default | start to ready | RSS after start / after an hour of scrapes | "
            "idle CPU | leg booted (date) |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows) + "\n" + same_configuration_note(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bed.bench_table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = ap.parse_args(argv)
    t = table()
    if not args.write:
        print(t, end="")
        return 0
    readme = REPO / "README.md"
    try:
        readme.write_text(matrix_table.replace_section(readme.read_text(), t, BEGIN, END))
    except ValueError as e:
        print(f"bench_table: README.md: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
