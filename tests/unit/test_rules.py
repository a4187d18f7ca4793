"""deploy/prometheus/: promtool's checks and unit tests, and what the rule files promise.

promtool comes from Debian's prometheus package (deploy/install-debian.sh --test).
"""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ALERTS = PROM / "mnmon.alerts.yml"
RECORDING = PROM / "mnmon.rules.yml"
TESTS = sorted((PROM / "tests").glob("*.yml"))
RUNBOOKS = PROM.parents[1] / "docs" / "runbooks"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed: apt-get install prometheus (deploy/install-debian.sh --test)")

EXPECTED_ALERTS = {"MnmonNotifierBlocksOomReaper", "MnmonOomReaperGaveUp", "MnmonUnpairedInvalidateStarts",
                   "MnmonProbeNotAttached", "MnmonExporterDown", "MnmonEventsLost", "MnmonOomPrematureVictim"}


def rules(path):
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def promtool(*args):
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_check_rules():
    r = promtool("check", "rules", RECORDING, ALERTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == 2


@needs_promtool
def test_promtool_check_config_loads_the_rule_files():
    r = promtool("check", "config", PROM / "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 2 rule files found" in r.stdout


@needs_promtool
def test_promtool_test_rules():
    assert TESTS, "no rule unit tests in deploy/prometheus/tests/"
    r = promtool("test", "rules", *TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(TESTS)


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases = [c for path in TESTS for t in yaml.safe_load(path.read_text())["tests"]
             for c in t.get("alert_rule_test", [])]
    names = {r["alert"] for r in rules(ALERTS)}
    assert names == EXPECTED_ALERTS
    for name in names:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no case where it stays quiet"


def test_every_alert_explains_itself():
    for r in rules(ALERTS):
        assert r["labels"]["severity"] in {"info", "warning", "critical"}, r["alert"]
        for key in ("summary", "description"):
            assert len(r["annotations"].get(key, "")) > 20, f"{r['alert']}: {key}"


def test_every_alert_links_its_runbook_under_one_base():
    urls = {r["alert"]: r["annotations"]["runbook_url"] for r in rules(ALERTS)}
    bases = {url.rsplit("/", 1)[0] for url in urls.values()}
    [base] = bases
    assert base.startswith("https://") and base.endswith("/docs/runbooks")
    assert f"#   {base}\n" in ALERTS.read_text(), "the header names the base the alerts use"
    for alert, url in urls.items():
        assert url == f"{base}/{alert}.md"
        assert "## What to look at, in order" in (RUNBOOKS / f"{alert}.md").read_text()
    assert {p.stem for p in RUNBOOKS.glob("*.md")} == set(urls), "a runbook without its alert"


def test_the_job_is_named_in_one_rule_only():
    named = [r.get("alert") or r.get("record") for path in (ALERTS, RECORDING) for r in rules(path)
             if "job=" in r["expr"].replace(" ", "")]
    assert named == ["MnmonExporterDown"]


def test_recording_rule_names_follow_level_metric_operations():
    for r in rules(RECORDING):
        level, metric, ops = r["record"].split(":")
        assert level == "mnmon" and metric and ops, r["record"]


def test_prometheus_yml_loads_every_rule_file():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert sorted(cfg["rule_files"]) == sorted([ALERTS.name, RECORDING.name])
