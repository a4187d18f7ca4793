"""Real-kernel tests: they run inside the guest that `make test-kernel` boots."""
import os
from pathlib import Path

import pytest

from bed import fixture_dev
from tests.kernel import held_monitor


def pytest_collection_modifyitems(config, items):
    if os.environ.get("MNMON_GUEST") == "1":
        return
    skip = pytest.mark.skip(reason="real-kernel test: run it with `make test-kernel` (boots the stock kernel)")
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def fixture_module():
    """The fixture module is loaded (guest_setup.sh inserts it) and its counters readable."""
    assert Path(fixture_dev.DEVICE).exists(), "mnmon_fixture is not loaded: was it built (make fixture)?"
    return fixture_dev


@pytest.fixture(scope="module", autouse=True)
def held_monitor_released(request):
    """A module runs with the held monitor (held_monitor.py) only where it says it may
    (HOLDS_MONITOR): the others start monitors of their own or unload modules it may hold."""
    if not getattr(request.module, "HOLDS_MONITOR", False):
        held_monitor.release()


@pytest.fixture(scope="session", autouse=True)
def held_monitor_closed_at_the_end():
    yield
    held_monitor.release()
