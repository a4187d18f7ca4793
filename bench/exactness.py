"""Exactness under load: a million invalidations through the fixture's interval
notifier; mnmon's count must equal the fixture's own, with no event lost.

While the loop runs, the process holding the monitor does the daemon's duty cycle,
so the same run gives the daemon's CPU under load.
"""
from dataclasses import dataclass

from bench import churn, footprint
from bench.overhead import CALLBACKS, wait_attached
from bed.fixture_dev import read_stats

SYMBOL = CALLBACKS["interval"][0]


@dataclass
class Exactness:
    iterations: int
    mnmon: int            # mnmon_notifier_invalidations_total{notifier=SYMBOL, mode=blockable, result=ok}, delta
    fixture: int          # the fixture's own blockable_ok for the slot
    core: int             # mnmon_invalidate_range_start_total{blockable, ok}, delta (other tasks add to it)
    lost: int             # mnmon_events_lost_total, delta
    ns_per_iter: float
    duty: footprint.Duty  # the daemon's CPU meanwhile

    @property
    def exact(self):
        return self.mnmon == self.fixture == self.iterations and self.core >= self.iterations and self.lost == 0


def _value(snap, name, **labels):
    return snap.get(name, **labels) or 0


def _notifier(snap):
    return _value(snap, "mnmon_notifier_invalidations_total", notifier=SYMBOL, module="mnmon_fixture",
                  kind="interval", mode="blockable", result="ok")


def run(mon, scrape, iterations=1_000_000):
    with churn.Held("interval", iterations) as c:
        wait_attached(mon, (SYMBOL,))
        before = mon.snapshot()
        c.go()
        duty = footprint.duty_cycle(mon, scrape, until=c.result_ready)
        result = c.wait_result()
        after, fixture = mon.snapshot(), read_stats()[c.slot]
    return Exactness(
        iterations, _notifier(after) - _notifier(before), fixture.blockable_ok,
        _value(after, "mnmon_invalidate_range_start_total", mode="blockable", result="ok") -
        _value(before, "mnmon_invalidate_range_start_total", mode="blockable", result="ok"),
        _value(after, "mnmon_events_lost_total") - _value(before, "mnmon_events_lost_total"),
        result.ns_per_iter, duty)
