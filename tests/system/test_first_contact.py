"""First contact: the README's first command, `deploy/run`, on a fresh Debian 12 root
(mmdebstrap, chrooted on this host) whose kernel Debian does not package. It must
install what it needs, say in one line what the kernel refuses (here: kprobes and fentry,
not headers: the kernel's BTF places every field in Debian's current headers), and serve
/metrics, scraped from outside the chroot."""
import os
import signal
import subprocess
import time

import pytest

from tests.support.mnmon_proc import free_port
from tests.system import roots
from tests.system.scrape import attached, not_attached, wait_samples

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and BPF need root")


@pytest.fixture(scope="module")
def served():
    release = os.uname().release
    if subprocess.run(["apt-cache", "show", f"linux-headers-{release}"], capture_output=True).returncode == 0:
        pytest.skip(f"Debian packages {release}'s headers: this host is not the case under test")
    root = roots.unpack(roots.root_tar("base", ["ca-certificates"]), roots.BUILD / "first-contact")
    roots.trust_local_cas(root)
    roots.copy_checkout(root)
    port = free_port()
    log = open(roots.BUILD / "first-contact.log", "w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(roots.chroot_argv(root, f"cd /opt/mnmon && exec deploy/run "
                                                    f"--web.listen-address 127.0.0.1:{port}"),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # apt installs bcc, clang's libraries and headers (from the cache after the first run), then bcc compiles.
        snap = wait_samples(f"http://127.0.0.1:{port}/metrics", 900, alive=lambda: proc.poll() is None,
                            what="deploy/run")
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.seek(0)
        output = log.read()
        log.close()
    print(f"first contact: /metrics after {seconds:.0f} s")
    return snap, output, release


def test_serves_degraded_with_tracepoints(served):
    snap, output, release = served
    on = attached(snap)
    # This host loads tracepoint programs: the OOM tracepoints attach against Debian's headers...
    for tp in ("oom:mark_victim", "oom:start_task_reaping"):
        assert on.get(tp) == "tracepoint", (on, output[-2000:])
    # ...and not the core probes: this kernel has no kprobes and refuses fentry.
    assert "invalidate_range_start" in not_attached(snap)
    build = [dict(k[1]) for k in snap if k[0] == "mnmon_build_info"]
    assert build and build[0]["kernel"] == release


def test_says_in_one_line_what_is_missing(served):
    _, output, release = served
    lines = [l for l in output.splitlines() if "per-notifier outcomes not countable here" in l]
    assert len(lines) == 1, output[-3000:]
    assert "refused by the kernel" in lines[0] or "no kprobes" in lines[0], lines
    assert not [l for l in output.splitlines() if "headers" in l and ("degraded" in l or "not this kernel" in l)], \
        output[-3000:]
    assert "Traceback" not in output
