"""What the booted kernel does differently, by version: the tests ask here, not uname."""
import os
import re

from monitor.plan.attach_plan import HASH, TASK_STORAGE


def version(release=None):
    """(major, minor) of a release string such as '5.10.0-46-amd64' (default: the running kernel)."""
    m = re.match(r"(\d+)\.(\d+)", release or os.uname().release)
    return (int(m.group(1)), int(m.group(2)))


def at_least(major, minor, release=None):
    return version(release) >= (major, minor)


def exit_mmap_reaps(release=None):
    """Whether exit_mmap calls __oom_reap_task_mm on an OOM victim itself: up to 6.0
    (until "mm: drop oom code from exit_mmap"). It does so after mmu_notifier_release,
    which has unhooked list notifiers: only interval notifiers meet that call."""
    return not at_least(6, 1, release)


def oom_reap_calls_per_victim(release=None, retries=10):
    """__oom_reap_task_mm calls an interval notifier of an OOM victim meets when every
    attempt is blocked: the reaper's retries, plus exit_mmap's up to 6.0."""
    return retries + (1 if exit_mmap_reaps(release) else 0)


def ends_paired_on_failure(release=None):
    """Whether a failing non-blockable start calls range_end of the notifiers already
    started (c2655835fd8c, 5.12, and backported to 5.10.y): before it their ends are
    skipped, left unpaired."""
    return at_least(5, 12, release) or version(release) == (5, 10)


def stores(release=None):
    """The in-flight stores the tests run mnmon with: the one mnmon picks on this kernel, task
    storage from 5.12 (4cf1bc1f1045), the hash before, as users meet them (the hash in the
    5.10 leg of every run); both with MNMON_STORES=both."""
    if os.environ.get("MNMON_STORES") == "both":
        return [TASK_STORAGE, HASH]
    return [picked_store(release)]


def picked_store(release=None):
    """The in-flight store mnmon picks on this kernel: task storage from 5.12, the hash before."""
    return TASK_STORAGE if at_least(5, 12, release) else HASH


def latencies():
    """The probes.latency settings a test of both runs: the default (sampled) and every probe
    (full) in the installed kernel's full tier; in a matrix leg (MNMON_STORES=default) the
    default only."""
    if os.environ.get("MNMON_STORES") == "default":
        return ["sampled"]
    return ["sampled", "full"]
