"""Two benchmark runs' instruction counts side by side: do they repeat?

    python -m bench.compare build/bench/RESULTS.json OTHER.json

Each run's instructions per invalidation (per mode, attach method and state: the least of
its repetitions) come from the RESULTS.json `make bench` writes. Prints each pair and their
difference; exit status 0 when every difference is within --within (default 1 %).
"""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)["instructions_per_invalidation"]


def differences(a, b):
    """[(key, a, b, |a - b| / a)] for the keys both runs have, largest difference first."""
    out = [(k, a[k], b[k], abs(a[k] - b[k]) / a[k]) for k in a if k in b and a[k]]
    return sorted(out, key=lambda d: -d[3])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--within", type=float, default=0.01, help="largest relative difference (default 0.01)")
    args = ap.parse_args(argv)
    try:
        a, b = load(args.a), load(args.b)
    except (OSError, ValueError, KeyError) as e:
        print(f"bench.compare: {e}", file=sys.stderr)
        return 2
    diffs = differences(a, b)
    if not diffs:
        print("bench.compare: the two runs have no figure in common", file=sys.stderr)
        return 2
    for key, x, y, d in diffs:
        print(f"{key:55} {x:12,.0f} {y:12,.0f} {d:7.2%}")
    worst = diffs[0]
    ok = worst[3] <= args.within
    print(f"{len(diffs)} figures; largest difference {worst[3]:.2%} ({worst[0]}): "
          f"{'within' if ok else 'NOT within'} {args.within:.0%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
