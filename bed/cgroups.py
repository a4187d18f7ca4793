"""Memory cgroups made by tests."""
import time


def remove_when_empty(path, tries=100):
    """rmdir a cgroup once its last task has gone (exit is not instant: retry)."""
    for _ in range(tries):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)
