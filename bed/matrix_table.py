"""The README's kernel support table, written from the last matrix run (build/matrix/),
never by hand.

    python -m bed.matrix_table            # print it
    python -m bed.matrix_table --write    # replace it in README.md
"""
import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from bed import kernels
from monitor.plan import catalogue

REPO = kernels.REPO
OUT = REPO / "build" / "matrix"
BEGIN, END = "<!-- matrix-table:begin -->", "<!-- matrix-table:end -->"
FIGURES_BEGIN, FIGURES_END = "<!-- matrix-figures:begin -->", "<!-- matrix-figures:end -->"
CORE = tuple(catalogue.core_names())
OOM = ("oom_reap_task_mm", "oom_reaper_gave_up")
FIXTURE_KINDS = (("mnmon_fx_list_", "list"), ("mnmon_fx_interval_", "interval"), ("mnmon_fx_two_pass_", "two-pass"))


def junit_outcomes(text):
    """{'passed': n, 'failed': n, 'skipped': n, 'xfailed': n, 'seconds': s} from pytest's junit XML."""
    out = {"passed": 0, "failed": 0, "skipped": 0, "xfailed": 0}
    root = ET.fromstring(text)
    out["seconds"] = round(sum(float(s.get("time", 0)) for s in root.iter("testsuite")))
    for case in root.iter("testcase"):
        kids = {c.tag: c for c in case}
        if "failure" in kids or "error" in kids:
            out["failed"] += 1
        elif "skipped" in kids:
            xfail = "xfail" in (kids["skipped"].get("type", "") + kids["skipped"].get("message", ""))
            out["xfailed" if xfail else "skipped"] += 1
        else:
            out["passed"] += 1
    return out


def junit_figures(text):
    """[(test, line)]: what each passed test printed (its numbers next to their ground truth)."""
    out = []
    for case in ET.fromstring(text).iter("testcase"):
        kids = {c.tag: c for c in case}
        if {"failure", "error", "skipped"} & set(kids) or "system-out" not in kids:
            continue
        for line in (kids["system-out"].text or "").splitlines():
            if line.strip() and not re.fullmatch(r"-+ Captured \w+ -+", line.strip()):
                out.append((case.get("name"), line.strip()))
    return out


def figures(out=OUT):
    """Per kernel, the figures its leg's tests printed, as a markdown list."""
    text = ""
    for d in sorted((d for d in out.glob("*") if (d / "junit.xml").exists()), key=lambda p: kernels.version_key(p.name)):
        lines = junit_figures((d / "junit.xml").read_text())
        if lines:
            text += f"- {d.name}:\n" + "".join(f"  - `{t}`: {l}\n" for t, l in lines)
    return text


def _mmss(seconds):
    return f"{seconds // 60}:{seconds % 60:02d}"


def _method(probes, names):
    got = []
    for n in names:
        st = probes.get(n)
        got.append(st["method"] if st and st["attached"] else "off")
    return "/".join(dict.fromkeys(got))


def counted(probes):
    """What this kernel's run counted per notifier: KVM and the fixture's kinds whose callbacks attached."""
    attached = [n.split(":", 1)[1] for n, st in probes.items() if n.startswith("notifier:") and st["attached"]]
    what = ["KVM"] if any(s.startswith("kvm_") for s in attached) else ["KVM: not found"]
    kinds = [k for prefix, k in FIXTURE_KINDS if any(s.startswith(prefix) for s in attached)]
    return ", ".join(what + (["fixture " + "/".join(kinds)] if kinds else []))


def row(d):
    """One kernel's row from its matrix directory, or None when it never ran."""
    leg_f = d / "leg.json"
    if not leg_f.exists():
        return None
    leg = json.loads(leg_f.read_text())
    facts = [json.loads(f.read_text()) for f in sorted(d.glob("facts-*.json"))]
    out = junit_outcomes((d / "junit.xml").read_text()) if (d / "junit.xml").exists() else None
    if out is None:
        result = f"did not run (rc {leg['rc']})"
    else:
        result = ("pass" if leg["rc"] == 0 else "FAIL") + f": {out['passed']} passed" + \
            "".join(f", {out[k]} {k}" for k in ("failed", "xfailed", "skipped") if out[k])
    probes = {}
    for f in facts:
        for name, st in f["probes"].items():
            if st["attached"] or name not in probes:
                probes[name] = st
    return {
        "kernel": leg["release"],
        "headers": {"own": "its own"}.get(leg.get("headers", "own"), leg.get("headers", "own")),
        "bcc": ", ".join(sorted({f["bcc"] for f in facts})) or "-",
        "core": _method(probes, CORE) if probes else "-",
        "oom": _method(probes, OOM) if probes else "-",
        "callbacks": "/".join(sorted({st["method"] for n, st in probes.items()
                                      if n.startswith("notifier:") and st["attached"]})) or "-",
        "inflight": ", ".join(f["inflight"] for f in facts) or "-",
        "counted": counted(probes) if probes else "-",
        "result": result,
        "time": _mmss(out["seconds"]) if out else "-",
        "date": leg.get("date", ""),
    }


def table(out=OUT):
    rows = [r for r in (row(d) for d in sorted(out.glob("*"), key=lambda p: kernels.version_key(p.name))
                        if d.is_dir()) if r]
    head = ("| kernel | headers bcc compiled with | bcc | core probes (start/end) | notifier callbacks | "
            "reaper probes (reap/gave up) | in-flight store | counted per notifier | result | tests' time in the guest |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['kernel']} | {r['headers']} | {r['bcc']} | {r['core']} | {r['callbacks']} | {r['oom']} | "
                   f"{r['inflight']} | "
                   f"{r['counted']} | "
                   f"{r['result']} | {r['time']} ({r['date']}) |\n" for r in rows)
    return head + body


def replace_section(text, new, begin=BEGIN, end=END):
    """text with the part between the markers replaced by new."""
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise ValueError(f"no {begin} ... {end} section")
    return pat.sub(lambda m: f"{begin}\n{new}{end}", text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = ap.parse_args(argv)
    t, f = table(), figures()
    if not args.write:
        print(t + "\n" + f, end="")
        return 0
    readme = REPO / "README.md"
    try:
        text = replace_section(readme.read_text(), t)
        readme.write_text(replace_section(text, f, FIGURES_BEGIN, FIGURES_END))
    except ValueError as e:
        print(f"matrix_table: README.md: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
