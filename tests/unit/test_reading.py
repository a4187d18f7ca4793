"""Reading per concern: a map that cannot be read costs its concern's families only, is
logged once, and the scrape still answers."""
import gzip
import logging

from bench.scrape import Scraper, SyntheticMonitor, registry_for
from monitor.read import reading

NOTIFIER_FAMILIES = {"mnmon_notifier_invalidations_total", "mnmon_notifier_invalidate_range_end_total",
                     "mnmon_notifier_invalidation_duration_seconds"}


def families(snap):
    return {name for name, _ in snap.series}


def success(snap):
    return {dict(lbl)["collector"]: v for (name, lbl), v in snap.series.items()
            if name == "mnmon_scrape_collector_success"}


def test_every_concern_read_reports_success_and_duration():
    snap = SyntheticMonitor(10).snapshot()
    assert success(snap) == {"invalidations": 1, "notifiers": 1, "reaper": 1, "premature": 1, "events": 1}
    assert all(snap.get("mnmon_scrape_collector_duration_seconds", collector=c) >= 0 for c in success(snap))
    assert NOTIFIER_FAMILIES <= families(snap)


def test_a_broken_map_costs_its_concern_only():
    whole = SyntheticMonitor(10).snapshot()
    snap = SyntheticMonitor(10, broken=("notifier_latency",)).snapshot()
    assert success(snap) == {"invalidations": 1, "notifiers": 0, "reaper": 1, "premature": 1, "events": 1}
    assert not families(snap) & NOTIFIER_FAMILIES
    assert families(snap) == families(whole) - NOTIFIER_FAMILIES
    for (name, lbl), value in snap.series.items():        # the others' numbers are untouched
        if name not in ("mnmon_scrape_collector_duration_seconds", "mnmon_scrape_collector_success"):
            assert whole.series[(name, lbl)] == value, name


def test_a_scrape_with_a_broken_map_answers_200_with_the_others():
    scraper = Scraper(registry_for(SyntheticMonitor(10, broken=("oom_reap_calls",))))
    try:
        body = scraper.scrape().decode()        # raises unless HTTP 200
    finally:
        scraper.close()
    assert 'mnmon_scrape_collector_success{collector="reaper"} 0.0' in body
    assert 'mnmon_scrape_collector_success{collector="notifiers"} 1.0' in body
    assert "mnmon_invalidate_range_start_total{" in body and "mnmon_oom_victims_total" not in body


def test_a_failure_is_logged_once_and_its_recovery_once(caplog):
    failures = reading.Failures(logging.getLogger("test-reading"))
    mon = SyntheticMonitor(3, broken=("core_stats",), failures=failures)
    with caplog.at_level(logging.INFO, logger="test-reading"):
        for _ in range(5):
            snap = mon.snapshot()
        assert success(snap)["invalidations"] == 0 and success(snap)["notifiers"] == 0
        mon.broken.clear()
        for _ in range(3):
            snap = mon.snapshot()
    assert set(success(snap).values()) == {1}
    text = [r.getMessage() for r in caplog.records]
    assert sum("cannot read core_stats" in t for t in text) == 2        # invalidations and notifiers, once each
    assert sum(t.endswith(": reads again") for t in text) == 2
