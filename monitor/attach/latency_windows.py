"""Sampled latency (probes.latency: sampled): the callbacks' timing probes attached for a
window, then detached until the next one.

Between windows an invalidation runs the counts configuration's two programs only; in a
window each callback call also runs its entry and return programs. The walk counts every
call either way, so the counts are exact and only the latency histograms are a sample.

The window opens at a tick (the daemon's refresh, every discovery interval) and closes at
the first tick WINDOW seconds after it: at the default 5 s interval a window is 5 s every
PERIOD = 60 s, a twelfth of the time. A longer interval makes a window longer, and the
next one waits until the share of time timed is down to MAX_SHARE again: at any interval
the callbacks are timed at most a twelfth of the time (plus a tick). A window is due at
the first tick, so a histogram has calls within seconds of start. share() is
the fraction of the time since start the probes were attached
(mnmon_latency_sampled_ratio): the histograms hold that share of the calls, spread over
the run.

A window that is due opens only when busy() says an invalidation ran since it last asked
(a period: nothing else calls a callback). Else it is skipped, and counted in share() as
timed: it had nothing to time (calls that begin within its seconds wait for the next one).
Attaching and detaching a callback's probes rebuilds its trampoline: 46 ms of CPU for a
window on an emulated 6.1 with KVM's and a driver's callbacks, most of an idle daemon's
CPU when every window opened. On an idle host no window opens after the first; on a busy
one they open as before.
"""
import time

WINDOW = 5.0
PERIOD = 60.0
MAX_SHARE = WINDOW / PERIOD


class LatencyWindows:
    """Opens and closes timing windows on set_timing(bool), as ticks come."""

    def __init__(self, set_timing, window=WINDOW, period=PERIOD, clock=time.monotonic, max_share=MAX_SHARE,
                 busy=lambda: True):
        self.set_timing, self.window, self.period, self.clock = set_timing, window, period, clock
        self.busy = busy            # () -> whether an invalidation ran since the last call
        self.max_share = max_share
        self.started = clock()
        self.opened = None          # when the open window opened; None: closed
        self.last_open = None       # when the last window opened
        self.timed = 0.0            # seconds of closed windows
        self.held = False           # hold(): open until released (mnmon sample --timing)

    def tick(self):
        now = self.clock()
        if self.held:
            return
        if self.opened is not None and now - self.opened >= self.window:
            self._close(now)
        elif self.opened is None and (self.last_open is None or (now - self.last_open >= self.period
                                                                 and self.share() <= self.max_share)):
            if self.busy():
                self._open(now)
            else:
                # Nothing ran since the last window: this one would time nothing. Counted as
                # timed, so share() stays the share of the calls timed (nothing ran to time).
                self.last_open = now
                self.timed += self.window

    def hold(self, on=True):
        """Timing on from now until hold(False) (then the windows resume at the next tick)."""
        self.held = on
        if on and self.opened is None:
            self._open(self.clock())

    def share(self):
        """The fraction of the time since start the timing probes were attached."""
        now = self.clock()
        timed = self.timed + (now - self.opened if self.opened is not None else 0.0)
        return min(1.0, timed / (now - self.started)) if now > self.started else 0.0

    def close(self):
        if self.opened is not None:
            self._close(self.clock())

    def _open(self, now):
        self.set_timing(True)
        self.opened = self.last_open = now

    def _close(self, now):
        self.set_timing(False)
        self.timed += now - self.opened
        self.opened = None


def moved(read):
    """busy() for LatencyWindows: whether read() (a count) changed since the last call; True
    at the first, so the first window opens at start as before."""
    last = []

    def busy():
        now = read()
        changed = not last or now != last[0]
        last[:] = [now]
        return changed
    return busy
