"""tests/kernel/held_monitor.py: one monitor per configuration, held across modules, one at a time."""
import pytest

from tests.kernel import held_monitor


class FakeMonitor:
    started = []

    def __init__(self, config):
        self.config, self.closed, self.opened = config, False, 0
        self.received = None

    @classmethod
    def start(cls, **config):
        m = cls(config)
        cls.started.append(m)
        return m

    def open_events(self, callback):
        self.opened += 1
        self.callback = callback

    def close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    from monitor.attach import session
    FakeMonitor.started = []
    monkeypatch.setattr(session, "Monitor", FakeMonitor)
    monkeypatch.setattr(held_monitor.kernel_facts, "at_least", lambda major, minor, release=None: True)
    yield FakeMonitor
    held_monitor.release()


def test_the_same_configuration_is_started_once_and_its_events_go_to_a_fresh_list(fake):
    a = held_monitor.monitor()
    a.callback("first")
    b = held_monitor.monitor(inflight="task-storage", latency="full")    # the same run, named
    assert a is b and len(fake.started) == 1 and a.opened == 1
    assert b.received == []
    b.callback("second")
    assert b.received == ["second"]


def test_another_configuration_closes_the_held_one_first(fake):
    a = held_monitor.monitor()
    b = held_monitor.monitor(inflight="hash")
    assert a.closed and not b.closed and len(fake.started) == 2
    held_monitor.release()
    assert b.closed
    held_monitor.release()      # nothing held: nothing to do
