"""Signals at awkward moments and readers that go away: no death, no hang, no traceback."""
import os
import signal
import subprocess
import time

import pytest

from tests.host.test_degraded_host import HOG, _memcg
from bed.cgroups import remove_when_empty
from tests.support.mnmon_proc import MNMON, REPO, Serve, free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="attaching BPF needs root")


def test_sighup_at_start_does_not_kill_serve():
    port = free_port()
    proc = subprocess.Popen(MNMON + ["serve", "--web.listen-address", f"127.0.0.1:{port}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.1)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        proc.send_signal(signal.SIGHUP)            # during the compile
        time.sleep(2)
        assert proc.poll() is None, proc.communicate()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def oom_once(tag):
    d, procs, _ = _memcg(f"mnmon-watch-{os.getpid()}-{tag}")
    try:
        subprocess.run(["python3", "-c", HOG, str(procs)], timeout=120)
    finally:
        remove_when_empty(d)


def test_watch_exits_quietly_when_its_reader_goes_away():
    """`mnmon watch --json | head -1`: the second event's write finds the pipe closed."""
    r, w = os.pipe()
    proc = subprocess.Popen(MNMON + ["watch", "--json"], cwd=REPO, stdout=w, stderr=subprocess.PIPE, text=True)
    os.close(w)
    try:
        line = b""
        os.set_blocking(r, False)
        for i in range(5):
            oom_once(i)
            deadline = time.monotonic() + 10
            while b"\n" not in line and time.monotonic() < deadline and proc.poll() is None:
                try:
                    line += os.read(r, 4096)
                except BlockingIOError:
                    time.sleep(0.2)
            if b"\n" in line:
                break
        assert b'"event"' in line, (line, proc.poll())
        os.close(r)                                  # as head does after its line
        r = None
        for i in range(5):                           # more events: a write now meets EPIPE
            oom_once(f"after{i}")
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        assert proc.poll() is not None, "watch never exited"
        err = proc.stderr.read()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Exception ignored" not in err, err
    finally:
        if r is not None:
            os.close(r)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
