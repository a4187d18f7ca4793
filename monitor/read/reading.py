"""Reading per concern (invalidations, notifiers, reaper, events): each concern's maps are
read and turned into series on their own, as node_exporter runs its collectors, so a map
that cannot be read costs that concern's families and the scrape still answers.

    mnmon_scrape_collector_success{collector}           1 read, 0 failed
    mnmon_scrape_collector_duration_seconds{collector}  how long its read took
"""
import logging
import time

from monitor.export.model import Snapshot
from monitor.read.readers import CONCERNS


class Failures:
    """Logs a concern's failure once, when it starts failing (or fails differently), and
    once when it reads again: a scrape every few seconds would repeat it otherwise."""

    def __init__(self, log=None):
        self.log = log or logging.getLogger("mnmon")
        self.failing = {}           # concern -> its last error's text

    def failed(self, concern, exc):
        what = f"{type(exc).__name__}: {exc}"
        if self.failing.get(concern) != what:
            self.log.warning("reading %s: %s (its series are left out until it reads again)", concern, what)
            self.log.debug("reading %s", concern, exc_info=True)
        self.failing[concern] = what

    def read(self, concern):
        if self.failing.pop(concern, None) is not None:
            self.log.info("reading %s: reads again", concern)


def collect(read, ctx, failures, snapshot=None):
    """A Snapshot of every concern: read(maps) -> raw map contents (readers.read_raw's
    shape); ctx: a readers.Context; failures: a Failures."""
    s = snapshot if snapshot is not None else Snapshot()
    for name, concern in CONCERNS.items():
        t0 = time.monotonic()
        part = Snapshot()
        try:
            concern.build(part, read(concern.maps), ctx)
        except Exception as e:      # noqa: BLE001 -- bcc raises bare Exception; any failure costs one concern
            failures.failed(name, e)
            ok = 0
        else:
            failures.read(name)
            s.series.update(part.series)
            ok = 1
        s.set("mnmon_scrape_collector_success", ok, collector=name)
        s.set("mnmon_scrape_collector_duration_seconds", time.monotonic() - t0, collector=name)
    return s
