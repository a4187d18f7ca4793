"""/metrics written straight from a Snapshot, in the Prometheus text format 0.0.4 and in
OpenMetrics 1.0: byte for byte what prometheus_client writes for the same families
(tests/unit/test_exposition.py holds them side by side), at a fraction of the cost.

prometheus_client builds a Metric object per family, then a Sample and a labels dict
per line, validates and escapes every name again and sorts every label set. With 100
notifiers (6,400 lines) that took 40 ms in the text format and 130 ms in OpenMetrics,
which Prometheus asks for first. Our names and label names come from the fixed
contract in monitor.export.metrics, so only label values need escaping, and each label set is
written once per series, not once per histogram bucket.

    registry = Registry(collector)      # collector.snapshot() -> Snapshot
    body, content_type = encode(registry, accept_header)
"""
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

from monitor.export.metrics import FAMILIES
from monitor.export.model import Histogram

OPENMETRICS = "application/openmetrics-text"


def escape_value(v):
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _help(text, openmetrics):
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r'\"') if openmetrics else text


class _Numbers(dict):
    """floatToGoString, remembered: a scrape repeats the same few counts thousands of times."""

    def __missing__(self, value):
        s = self[value] = floatToGoString(value)
        return s


def _labels(pairs):
    return ",".join(f'{k}="{escape_value(v)}"' for k, v in pairs)


def _histogram(out, name, pairs, h, num):
    # prometheus_client sorts label names, so "le" lands among the series' own labels.
    before = _labels(p for p in pairs if p[0] < "le")
    after = _labels(p for p in pairs if p[0] > "le")
    head = f"{name}_bucket{{{before}," if before else f"{name}_bucket{{"
    tail = f",{after}}} " if after else "} "
    for le, n in h.buckets:
        out.append(f'{head}le="{num[le]}"{tail}{num[n]}\n')
    lbl = f"{{{before}{',' if before and after else ''}{after}}}" if pairs else ""
    out.append(f"{name}_count{lbl} {num[h.count]}\n")
    out.append(f"{name}_sum{lbl} {num[h.sum]}\n")


def render(snapshot, openmetrics=False):
    """The families of snapshot as exposition text (without OpenMetrics' closing '# EOF')."""
    out, num, current = [], _Numbers(), None
    for (name, pairs), value in sorted(snapshot.series.items()):
        if name != current:
            current, fam = name, FAMILIES[name]
            # OpenMetrics names a counter family without its samples' _total suffix.
            head = name[:-len("_total")] if openmetrics and fam.type == "counter" else name
            out.append(f"# HELP {head} {_help(fam.help, openmetrics)}\n# TYPE {head} {fam.type}\n")
        if isinstance(value, Histogram):
            _histogram(out, name, pairs, value, num)
        elif pairs:
            out.append(f"{name}{{{_labels(pairs)}}} {num[value]}\n")
        else:
            out.append(f"{name} {num[value]}\n")
    return "".join(out)


class Registry(CollectorRegistry):
    """A prometheus_client registry whose Snapshot source encode() writes itself.

    source: has snapshot() -> Snapshot, and collect()/describe() for prometheus_client
    (used only for name[] selections and generic consumers). The process and platform
    collectors, a few dozen lines, stay with prometheus_client's own writer.
    """

    def __init__(self, source, others=()):
        super().__init__(auto_describe=False)
        self.source = source
        self.others = CollectorRegistry(auto_describe=False)
        self.register(source)
        for c in others:
            self.others.register(c)
            self.register(c)

    def encode(self, openmetrics=False):
        ours = render(self.source.snapshot(), openmetrics).encode()
        rest = (openmetrics_latest if openmetrics else text_latest)(self.others)
        return ours + rest      # OpenMetrics' "# EOF" comes last


class _Selected:
    """The samples of registry named in names. prometheus_client's restricted_registry()
    would drop every collector without describe(), ours among them."""

    def __init__(self, registry, names):
        self.registry, self.names = registry, set(names)

    def collect(self):
        for m in self.registry.collect():
            samples = [s for s in m.samples if s.name in self.names]
            if samples:
                kept = Metric(m.name, m.documentation, m.type, m.unit)
                kept.samples = samples
                yield kept


def encode(registry, accept=None, names=()):
    """(body, content type) of a /metrics answer for an Accept header; names: the
    name[] selection (prometheus_client's way: samples by name)."""
    encoder, content_type = choose_encoder(accept)
    if names:
        return encoder(_Selected(registry, names)), content_type
    if isinstance(registry, Registry):
        return registry.encode(content_type.startswith(OPENMETRICS)), content_type
    return encoder(registry), content_type
