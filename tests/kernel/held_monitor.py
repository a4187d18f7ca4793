"""One monitor held across the test modules that run the same configuration, as a daemon
runs through a host's life while workloads come and go. Each start compiles with bcc: 30 s
on an idle emulated CPU, up to 150 s beside another guest, most of a leg's time when every
module started its own. The tests read deltas (a snapshot before, one after), so what the
modules before counted does not enter theirs.

One at a time: two monitors in one process share their kprobes' event names. conftest.py
releases it before every module that does not say HOLDS_MONITOR = True: those start
monitors of their own, or unload a module whose callbacks the held monitor may probe by
fentry (fentry on a module's text holds it loaded).
"""
from tests.kernel import kernel_facts

_held = {}


def _key(inflight=None, latency="full", **config):
    # None is the store mnmon picks: the key says it, so the same run is not started twice
    inflight = inflight or kernel_facts.picked_store()
    return tuple(sorted(dict(config, inflight=inflight, latency=latency).items()))


def monitor(**config):
    """A started Monitor of this configuration (Monitor.start's keywords): the held one when
    it is the same, else a new one (the held one closed first). Its events from now on go to
    a fresh list, mon.received."""
    from monitor.attach.session import Monitor
    key = _key(**config)
    if _held.get("key") != key:
        release()
        m = Monitor.start(**config)
        m.open_events(lambda event: m.received.append(event))
        _held.update(key=key, mon=m)
    m = _held["mon"]
    m.received = []
    return m


def release():
    """Close the held monitor, if any."""
    m = _held.pop("mon", None)
    _held.pop("key", None)
    if m is not None:
        m.close()
