"""Scraping an mnmon that runs somewhere else (a chroot, a guest): by URL only."""
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def samples(url, timeout=30):
    """{(name, frozenset(labels)): value} of one scrape of url."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def wait_samples(url, timeout, alive=lambda: True, what="mnmon"):
    """The first scrape that answers within timeout seconds; alive() false gives up early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited before serving {url}")
        try:
            return samples(url)
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{what}: {url} did not answer within {timeout} s")


def value(snap, name, **labels):
    """One series' value, 0 when absent (counters exported lazily)."""
    return snap.get((name, frozenset(labels.items())), 0.0)


def attached(snap):
    """{probe: method} of the probes mnmon_probe_attached says are attached."""
    return {dict(k[1])["probe"]: dict(k[1]).get("method", "") for k, v in snap.items()
            if k[0] == "mnmon_probe_attached" and v == 1}


def not_attached(snap):
    return {dict(k[1])["probe"] for k, v in snap.items() if k[0] == "mnmon_probe_attached" and v == 0}
