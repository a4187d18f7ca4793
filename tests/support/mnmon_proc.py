"""Running the real `mnmon` command in tests: serve on a free loopback port, scrape it."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
MNMON = [sys.executable, "-m", "monitor"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, timeout=300, user=None, **kw):
    """Run mnmon; CompletedProcess with text stdout/stderr."""
    argv = MNMON + list(args)
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


class Serve:
    """`mnmon serve` on 127.0.0.1:port, ready when /metrics answers."""

    def __init__(self, *args, ready_timeout=240):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(MNMON + ["serve", "--web.listen-address", f"127.0.0.1:{self.port}", *args],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mnmon serve exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                self.text()
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mnmon serve not ready after {ready_timeout} s")

    def text(self, path="/metrics"):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read().decode()

    def samples(self):
        """{(name, frozenset(labels)): value} of one scrape."""
        out = {}
        for fam in text_string_to_metric_families(self.text()):
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def stop(self, timeout=30):
        """SIGTERM; returns (exit status, output)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


