"""The daemon's footprint: memory and CPU of the process holding the monitor.

The benchmark process holds the monitor and does what `mnmon serve` does: a
discovery refresh() every 5 s (the default discovery.interval) and, standing in
for Prometheus, a /metrics rendering every 15 s.
"""
import select
import time
from dataclasses import dataclass

from monitor.attach.memory import status_kb

REFRESH_S = 5.0
SCRAPE_S = 15.0


def rss_mb(pid="self"):
    """(VmRSS, RssAnon, RssFile) in MB."""
    st = status_kb(pid)
    return st["VmRSS"] / 1024, st.get("RssAnon", 0) / 1024, st.get("RssFile", 0) / 1024


@dataclass
class Duty:
    cpu_s: float          # this process's CPU time, all threads, user + system
    wall_s: float
    refreshes: int
    scrapes: int
    refresh_cpu_s: float = 0.0
    scrape_cpu_s: float = 0.0

    @property
    def core_pct(self):
        return 100 * self.cpu_s / self.wall_s


def _client_cpu(scrape):
    """CPU the scraping client has spent so far, if scrape is a bench.scrape.Scraper's."""
    return getattr(getattr(scrape, "__self__", None), "client_cpu_s", 0.0)


def duty_cycle(mon, scrape, seconds=None, until=None, refresh_s=REFRESH_S, scrape_s=SCRAPE_S):
    """The daemon's work for `seconds`, or until until(timeout) says done (it may wait
    up to timeout). scrape(): one /metrics request. Returns the CPU it took, less what
    the scraping client (standing in for Prometheus, in this process) spent."""
    t0, c0, k0 = time.monotonic(), time.process_time(), _client_cpu(scrape)
    # A window of scrape_s seconds is one period: a scrape, scrape_s / refresh_s refreshes.
    next_refresh = next_scrape = t0
    refreshes = scrapes = 0
    cpu = {"refresh": 0.0, "scrape": 0.0}

    def timed(what, fn):
        c, k = time.process_time(), _client_cpu(scrape)
        fn()
        cpu[what] += time.process_time() - c - (_client_cpu(scrape) - k)
    while True:
        now = time.monotonic()
        if seconds is not None and now - t0 >= seconds:
            break
        if now >= next_refresh:
            timed("refresh", mon.refresh)
            refreshes += 1
            next_refresh += refresh_s
        if now >= next_scrape:
            timed("scrape", scrape)
            scrapes += 1
            next_scrape += scrape_s
        wait = max(0.0, min(next_refresh, next_scrape) - time.monotonic())
        if seconds is not None:
            wait = min(wait, max(0.0, t0 + seconds - time.monotonic()))
        if until is not None:
            if until(wait):
                break
        else:
            select.select([], [], [], wait)
    return Duty(time.process_time() - c0 - (_client_cpu(scrape) - k0), time.monotonic() - t0, refreshes, scrapes,
                cpu["refresh"], cpu["scrape"])


def idle_windows(mon, scrape, n):
    """n duty-cycle windows of one scrape period with no load, sorted by CPU share."""
    return sorted((duty_cycle(mon, scrape, seconds=SCRAPE_S) for _ in range(n)), key=lambda d: d.core_pct)


def scrapes(mon, scrape, n):
    """n scrapes back to back, with the refresh()es the daemon runs between two;
    ([wall ms of each scrape], the last body)."""
    times, body = [], b""
    for _ in range(n):
        t = time.perf_counter()
        body = scrape()
        times.append((time.perf_counter() - t) * 1e3)
        for _ in range(round(SCRAPE_S / REFRESH_S)):
            mon.refresh()
    return times, body
