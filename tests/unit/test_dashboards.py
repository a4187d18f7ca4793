"""dashboards/ and deploy/prometheus/ against each other and against monitor.export.metrics.

Grafana JSON structure (ids, grid, data source, variables) and the metric contract:
every series a panel or rule reads is one that mnmon exports, with labels it has,
and every family mnmon exports is on some dashboard. The readers here
(panel_queries, variable_queries, rule_expressions) are also what
tests/kernel/test_prometheus_queries.py sends to a real Prometheus.
"""
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from monitor.export.metrics import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
PROVISIONING = ROOT / "dashboards" / "provisioning"
RULE_FILES = sorted(p for p in (ROOT / "deploy" / "prometheus").glob("*.yml")
                    if "groups" in yaml.safe_load(p.read_text()))      # not prometheus.yml
DATASOURCE_UID = "${datasource}"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series of other exporters a rule joins, and the labels it may read of them.
FOREIGN = {"kube_pod_info": {"namespace", "pod", "uid"}}      # kube-state-metrics


def load(path):
    return json.loads(Path(path).read_text())


def panels(dashboard):
    """Every panel, the ones inside collapsed rows included."""
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def panel_queries():
    """[(dashboard file, panel title, refId, PromQL expr)] of every dashboard."""
    return [(path.name, p["title"], t["refId"], t["expr"])
            for path in DASHBOARDS for p in panels(load(path)) for t in p.get("targets", [])]


def variable_queries():
    """[(dashboard file, variable name, query)] of the query variables."""
    out = []
    for path in DASHBOARDS:
        for v in load(path)["templating"]["list"]:
            if v["type"] == "query":
                q = v["query"]
                out.append((path.name, v["name"], q["query"] if isinstance(q, dict) else q))
    return out


def rule_expressions():
    """[(rule file, record or alert name, PromQL expr)] of every rule file."""
    return [(path.name, r.get("record") or r["alert"], r["expr"])
            for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def exposed_names():
    """{series name as scraped: family} -- histograms only as _bucket/_sum/_count."""
    out = {}
    for f in FAMILIES.values():
        for suffix in HISTOGRAM_SUFFIXES if f.type == "histogram" else ("",):
            out[f.name + suffix] = f
    return out


def _code(expr):
    # Label values such as module="mnmon_fixture" are not metric names.
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr):
    return set(re.findall(r"(?<![\w:])mnmon_\w+", _code(expr)))


def recorded_names(expr):
    return set(re.findall(r"(?<![\w:])mnmon:[\w:]+", _code(expr)))


def selector_labels(expr):
    """{(metric, label)} for every label matcher written on an mnmon metric."""
    out = set()
    for name, body in re.findall(r"(?<![\w:])(mnmon_\w+)\s*\{([^}]*)\}", _code(expr)):
        out |= {(name, lbl) for lbl in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body)}
    return out


def grouping_labels(expr):
    """Labels named in by/without/on/ignoring/group_left/group_right clauses."""
    clauses = re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", _code(expr))
    return {lbl.strip() for c in clauses for lbl in c.split(",") if lbl.strip()}


def _labels_of(name):
    fam = exposed_names()[name]
    return set(fam.labels) | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())


ALL_EXPRESSIONS = [(f"{d}: {title} {ref}", e) for d, title, ref, e in panel_queries()] + \
                  [(f"{f}: {name}", e) for f, name, e in rule_expressions()]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_current_grafana_json(path):
    d = load(path)
    assert d["schemaVersion"] >= 39
    assert d["uid"] == path.stem and d["title"].startswith("mnmon / ")
    assert "mnmon" in d["tags"]
    assert d["id"] is None, "a provisioned dashboard must not carry a database id"


def test_the_three_dashboards_exist():
    assert [p.name for p in DASHBOARDS] == ["mnmon-notifier.json", "mnmon-oom-reaper.json", "mnmon-overview.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panel_ids_are_unique(path):
    ids = [p["id"] for p in panels(load(path))]
    assert len(ids) == len(set(ids)), ids


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_the_datasource_variable(path):
    for p in panels(load(path)):
        if p["type"] == "row":
            assert not p.get("targets"), p["title"]
            continue
        assert p["targets"], f"{p['title']}: no query"
        assert p["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == DATASOURCE_UID, f"{p['title']} {t['refId']}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_fit_24_columns_without_overlap(path):
    boxes = []
    for p in panels(load(path)):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] >= 1 and g["h"] >= 1, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']}: {g}"
        boxes.append((p["title"], g))
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or
                 a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        assert apart, f"{ta!r} {a} overlaps {tb!r} {b}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_templating_has_datasource_instance_and_notifier(path):
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queries = {name: q for d, name, q in variable_queries() if d == path.name}
    assert queries["instance"] == "label_values(mnmon_build_info, instance)"
    assert queries["notifier"] == 'label_values(mnmon_notifier_invalidations_total{instance=~"$instance"}, notifier)'
    for name in ("instance", "notifier"):
        assert variables[name]["datasource"]["uid"] == DATASOURCE_UID
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_heatmaps_read_histogram_buckets(path):
    heatmaps = [p for p in panels(load(path)) if p["type"] == "heatmap"]
    for p in heatmaps:
        for t in p["targets"]:
            assert t["format"] == "heatmap", p["title"]
            assert grouping_labels(t["expr"]) == {"le"}, p["title"]
            assert all(n.endswith("_bucket") for n in metric_names(t["expr"])), p["title"]
    if path.name != "mnmon-overview.json":
        assert heatmaps, "the notifier and OOM reaper dashboards show latency heatmaps"


@pytest.mark.parametrize("where,expr", ALL_EXPRESSIONS, ids=[w for w, _ in ALL_EXPRESSIONS])
def test_queries_read_only_exported_series_and_labels(where, expr):
    names = metric_names(expr)
    exposed = exposed_names()
    unknown = names - set(exposed)
    assert not unknown, f"not exported by mnmon (monitor.export.metrics.FAMILIES): {sorted(unknown)}"
    for name, label in selector_labels(expr):
        assert label in _labels_of(name), f"{name} has no label {label!r}"
    known = set().union(TARGET_LABELS, *(_labels_of(n) for n in names),
                        *(labels for name, labels in FOREIGN.items() if re.search(rf"\b{name}\b", expr)))
    assert grouping_labels(expr) <= known, f"grouping by labels no series here has: {grouping_labels(expr) - known}"


def test_legends_name_labels_the_query_has():
    for path in DASHBOARDS:
        for p in panels(load(path)):
            for t in p.get("targets", []):
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
                known = set().union(TARGET_LABELS, *(_labels_of(n) for n in metric_names(t["expr"])))
                assert legend <= known, f"{path.name}: {p['title']}: legend names {legend - known}"


def test_every_family_is_on_a_dashboard():
    shown = {exposed_names()[n].name for _, _, _, e in panel_queries() for n in metric_names(e)}
    assert set(FAMILIES) - shown == set()


def test_rules_use_only_recorded_names_that_exist():
    recorded = {name for _, name, e in rule_expressions() if name.startswith("mnmon:")}
    used = set().union(*(recorded_names(e) for _, e in ALL_EXPRESSIONS))
    assert used <= recorded, used - recorded


def test_metric_name_parser_on_literals():
    # The cross-checks above are only as good as these readers.
    expr = ('histogram_quantile(0.99, sum by (notifier, le) (rate(mnmon_x_bucket{module="mnmon_fixture", '
            'mode!="ok"}[5m]))) / on (instance) mnmon:y:rate5m')
    assert metric_names(expr) == {"mnmon_x_bucket"}
    assert recorded_names(expr) == {"mnmon:y:rate5m"}
    assert selector_labels(expr) == {("mnmon_x_bucket", "module"), ("mnmon_x_bucket", "mode")}
    assert grouping_labels(expr) == {"notifier", "le", "instance"}
    assert "mnmon_oom_reap_duration_seconds" not in exposed_names(), "a histogram is scraped only with suffixes"


def test_grafana_provisioning_files():
    ds = yaml.safe_load((PROVISIONING / "datasources" / "mnmon.yaml").read_text())
    assert ds["apiVersion"] == 1
    [source] = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${MNMON_PROMETHEUS_URL}"
    assert not source["isDefault"], "must not clash with a default data source the Grafana already has"
    dash = yaml.safe_load((PROVISIONING / "dashboards" / "mnmon.yaml").read_text())
    assert dash["apiVersion"] == 1
    [provider] = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "${MNMON_DASHBOARDS_DIR}"
