"""Real-kernel tests: they run inside the guest that `make test-kernel` boots."""
import os
from pathlib import Path

import pytest

from bed import fixture_dev


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
