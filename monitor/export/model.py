"""One model of the numbers: a Snapshot of series (name, labels, value).

Readers of BPF maps fill a Snapshot; the Prometheus collector, the CLI table and
the CLI JSON all render the same Snapshot, so they cannot disagree.
"""
from bisect import bisect_left
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from monitor.export.metrics import FAMILIES, LATENCY_BUCKETS


class ModelError(ValueError):
    """A series that does not fit its family (a programming error, reported with context)."""


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets as Prometheus wants them: ((le, count), ...) ending with +Inf."""
    buckets: tuple
    sum: float

    @property
    def count(self):
        return self.buckets[-1][1]


def log2_histogram(slots, total_ns, bounds=LATENCY_BUCKETS):
    """Fold log2(ns) slot counts {slot: n} into cumulative buckets in seconds.

    Slot s holds values in [2^s, 2^(s+1)) ns, so it belongs under the first le >= 2^(s+1) ns.
    """
    per = [0] * (len(bounds) + 1)          # the last one is +Inf's
    for s, n in slots.items():
        per[bisect_left(bounds, (1 << (s + 1)) / 1e9)] += n
    cum, out = 0, []
    for le, n in zip(bounds + _INF, per):
        cum += n
        out.append((le, cum))
    return Histogram(tuple(out), total_ns / 1e9)


_INF = (float("inf"),)


@dataclass
class Snapshot:
    """Series keyed by (family name, sorted label pairs)."""
    series: dict = field(default_factory=dict)

    def set(self, name, value, **labels):
        fam = FAMILIES.get(name)
        if fam is None:
            raise ModelError(f"{name}: not a family in monitor.export.metrics")
        if set(labels) != set(fam.labels):
            raise ModelError(f"{name}: labels {sorted(labels)} != {sorted(fam.labels)}")
        if (fam.type == "histogram") != isinstance(value, Histogram):
            raise ModelError(f"{name}: {fam.type} family given {type(value).__name__}")
        self.series[(name, tuple(sorted(labels.items())))] = value

    def add(self, name, value, **labels):
        """Add to a counter or gauge series (several map keys can fold into one series)."""
        key = (name, tuple(sorted(labels.items())))
        self.set(name, self.series.get(key, 0) + value, **labels)

    def get(self, name, **labels):
        return self.series.get((name, tuple(sorted(labels.items()))))

    def family(self, name):
        """[(labels dict, value)] of one family, in a stable order."""
        return [(dict(lbl), v) for (n, lbl), v in sorted(self.series.items(), key=_order) if n == name]

    def flat(self):
        """Every sample as exposition names it: histograms expand into _bucket/_sum/_count.

        [(name, labels dict, value)] -- what `mnmon sample --json` prints.
        """
        out = []
        for (name, lbl), v in sorted(self.series.items(), key=_order):
            labels = dict(lbl)
            if isinstance(v, Histogram):
                for le, n in v.buckets:
                    out.append((f"{name}_bucket", {**labels, "le": _fmt_le(le)}, float(n)))
                out.append((f"{name}_sum", labels, v.sum))
                out.append((f"{name}_count", labels, float(v.count)))
            else:
                out.append((name, labels, float(v)))
        return out


def _order(item):
    (name, lbl), _ = item
    return name, lbl


def _fmt_le(le):
    # The exposition format's own spelling, so JSON and /metrics label values match.
    return floatToGoString(le)
