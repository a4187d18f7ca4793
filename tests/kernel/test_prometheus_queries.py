"""Every dashboard query and every rule, evaluated by Debian's real Prometheus
scraping a real `mnmon serve` on the real kernel, while the KVM and A/B OOM
scenarios run under it.

A query that Grafana would send must parse and, since the scenarios exercise
every family the default configuration measures, return data. The rule files are
loaded into the server too, and must evaluate without error.
"""
import re
import time
import shutil

import pytest

from monitor.export.metrics import FAMILIES
from bed import scenarios, two_victims
from tests.support import dashboard_picture
from tests.support.mnmon_proc import REPO, Serve
from tests.support.promserver import JOB, Prometheus
from tests.unit.test_dashboards import (RULE_FILES, exposed_names, metric_names, panel_queries, rule_expressions,
                                        variable_queries)

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus not installed: apt-get install prometheus "
                                       "(deploy/install-debian.sh --test)")

# What Grafana puts in place of its variables. $datasource only picks the data source.
GRAFANA_VARIABLES = {"instance": ".*", "notifier": ".*", "__rate_interval": "1m", "__interval": "15s",
                     "__range": "1m"}
PANELS = panel_queries()
# serve runs the default configuration (probes.latency: sampled), which does not time the
# core start: that family, and the panel on it, have data with probes.latency: full
# (tests/kernel/test_probes.py reads the family there).
NOT_IN_DEFAULT = {"mnmon_invalidate_range_start_duration_seconds"}
RULES = rule_expressions()
# The monitor held by the modules before may stay attached through this one (held_monitor.py):
# serve runs in a process of its own.
HOLDS_MONITOR = True


def grafana_expand(expr):
    """expr with $var and ${var} replaced as Grafana would; an unknown variable is a KeyError."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: GRAFANA_VARIABLES[m.group(1) or m.group(2)], expr)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with Serve("--discovery.interval", "500ms") as srv, \
            Prometheus(srv.url + "/metrics", tmp_path_factory.mktemp("prometheus"), RULE_FILES) as prom:
        prom.wait_for_target(timeout=120)
        scenarios.run_kvm(iterations=200)
        # serve looks for new callbacks every 500 ms: let it attach the fixture's before the OOM.
        scenarios.run_oom(lists=[("A", "never_fail"), ("B", "fail_nonblock")], on_ready=lambda info: time.sleep(2))
        # A premature victim: a second OOM in the cgroup while the given-up first mm is held.
        two_victims.run_pair([("A", "never_fail"), ("B", "fail_nonblock")], on_ready=lambda info: time.sleep(2))
        # Scrapes before and after the victim: rate() and increase() have data from here on.
        prom.wait_for("rate(mnmon_oom_victims_total[1m]) > 0", timeout=120)
        yield prom


def test_grafana_expand():
    assert grafana_expand('rate(x{instance=~"$instance"}[$__rate_interval]) ${notifier}') == \
        'rate(x{instance=~".*"}[1m]) .*'
    with pytest.raises(KeyError):
        grafana_expand("$unknown")


def test_the_target_is_up(prometheus):
    [sample] = prometheus.query(f'up{{job="{JOB}"}}')["data"]["result"]
    assert sample["value"][1] == "1"


def test_every_family_is_scraped(prometheus):
    result = prometheus.query('count by (__name__) ({__name__=~"mnmon_.+"})')["data"]["result"]
    scraped = {r["metric"]["__name__"] for r in result}
    assert {n for n, f in exposed_names().items() if f.name not in NOT_IN_DEFAULT} - scraped == set()
    assert {exposed_names()[n].name for n in scraped} == set(FAMILIES) - NOT_IN_DEFAULT


def test_prometheus_reads_the_premature_victim(prometheus):
    """The one premature victim of the scenarios, named for B, as Prometheus scraped it; and
    the two given-up mms' held time (the A/B victim's and the pair's first)."""
    prometheus.wait_for("sum(mnmon_oom_premature_victims_total) > 0", timeout=60)
    [b] = prometheus.query('mnmon_oom_premature_victims_total{notifier="mnmon_fx_list_fail_nonblock_start"}'
                           )["data"]["result"]
    assert b["value"][1] == "1" and b["metric"]["module"] == "mnmon_fixture"
    # The pair's first mm is torn down after its second victim was chosen: a scrape can see
    # the premature victim before that teardown, so wait for it rather than read once.
    prometheus.wait_for("mnmon_oom_given_up_mm_held_seconds_count >= 2", timeout=60)
    [held] = prometheus.query("mnmon_oom_given_up_mm_held_seconds_count")["data"]["result"]
    assert held["value"][1] == "2"


@pytest.mark.parametrize("dashboard,title,ref,expr", PANELS, ids=[f"{d}:{t}:{r}" for d, t, r, _ in PANELS])
def test_panel_query_runs_and_returns_data(prometheus, dashboard, title, ref, expr):
    answer = prometheus.query(grafana_expand(expr))
    assert answer["status"] == "success", answer.get("error")
    if {exposed_names()[n].name for n in metric_names(expr)} <= NOT_IN_DEFAULT:
        # "No data" under the default, as its description says; never a made-up 0
        assert not answer["data"]["result"], answer["data"]["result"]
        return
    assert answer["data"]["result"], f"no data for {grafana_expand(expr)}"


@pytest.mark.parametrize("dashboard,name,query", variable_queries(),
                         ids=[f"{d}:{n}" for d, n, _ in variable_queries()])
def test_variable_query_finds_values(prometheus, dashboard, name, query):
    selector, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query).groups()
    answer = prometheus.query(f"count by ({label}) ({grafana_expand(selector)})")
    assert answer["status"] == "success", answer.get("error")
    assert [r["metric"][label] for r in answer["data"]["result"]], f"${name} would offer nothing"


@pytest.mark.parametrize("rule_file,name,expr", RULES, ids=[f"{f}:{n}" for f, n, _ in RULES])
def test_rule_expression_runs(prometheus, rule_file, name, expr):
    answer = prometheus.query(expr)
    assert answer["status"] == "success", answer.get("error")


def test_loaded_rules_evaluate_cleanly(prometheus):
    loaded = prometheus.evaluated_rules()
    assert sorted(r["name"] for r in loaded) == sorted(n for _, n, _ in RULES)
    assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"] == []


def test_overview_picture_from_real_data(prometheus):
    """The picture the README shows: the overview dashboard's panels, drawn from this run."""
    out = REPO / "build" / "dashboard-overview.png"
    out.parent.mkdir(exist_ok=True)
    drawn = dashboard_picture.draw(REPO / "dashboards" / "mnmon-overview.json", prometheus, out, minutes=3)
    assert drawn["Invalidation rate by mode and result"] >= 2
    assert drawn["Notifiers that blocked the reaper"] >= 1
    assert out.stat().st_size > 10_000
