"""Where the CPU of a missed target goes: cProfile's own time, summed per file."""
import cProfile
import pstats
from pathlib import Path

from bench.churn import REPO


def area(filename):
    """A short name for where code lives: a repository path, a package, or a stdlib module."""
    p = Path(filename)
    parts = p.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1:]
            return "/".join(rest[:2]) if len(rest) > 1 else rest[0]
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return "/".join(parts[-2:]) if p.name == "__init__.py" else p.name


def by_area(stats):
    """{area: own seconds} of a pstats.Stats. Built-in functions (str.format, re
    matching, syscalls) count for the areas of their callers, in proportion."""
    out = {}

    def add(filename, seconds):
        out[area(filename)] = out.get(area(filename), 0.0) + seconds
    for (filename, _, _), (_, _, tottime, _, callers) in stats.stats.items():
        if filename != "~" or not callers:
            add(filename, tottime)
            continue
        total = sum(c[3] for c in callers.values()) or 1.0
        for (caller_file, _, _), c in callers.items():
            add(caller_file, tottime * c[3] / total)
    return out


def profile(fn, times=3, top=5):
    """Run fn `times` times under cProfile; [(area, share of the time)] of the top areas."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(times):
        fn()
    prof.disable()
    areas = by_area(pstats.Stats(prof))
    total = sum(areas.values()) or 1.0
    return [(a, t / total) for a, t in sorted(areas.items(), key=lambda kv: -kv[1])[:top]]


def describe(label, shares):
    return f"{label}: " + ", ".join(f"{a} {100 * s:.0f} %" for a, s in shares)
