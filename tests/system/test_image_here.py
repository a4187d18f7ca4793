"""The container image's root on this host, whose kernel is not the one the image
carries headers for, without the node's /lib/modules: one line says the image's headers
compile and the kernel's BTF places the fields; what the kernel itself refuses (kprobes,
fentry here) is said in one line, and mnmon serves instead of exiting (a pod would
crash-loop). A chroot of the image's unpacked root (umoci unpack), not an OCI runtime:
the guest tier runs the image under podman."""
import os
import signal
import subprocess

import pytest

from tests.support.mnmon_proc import free_port
from tests.system import oci_image, roots
from tests.system.scrape import attached, not_attached, wait_samples

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and BPF need root")


@pytest.fixture(scope="module")
def served():
    oci_image.ensure_built()
    bundle = roots.BUILD / "image-bundle"
    subprocess.run(["rm", "-rf", str(bundle)], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{oci_image.LAYOUT}:{oci_image.version()}", str(bundle)],
                   check=True, stdout=subprocess.DEVNULL)
    rootfs = bundle / "rootfs"
    own = sorted(p.name for p in (rootfs / "lib/modules").iterdir() if p.is_dir())
    if os.uname().release in own:
        pytest.skip("the image carries this kernel's own headers: not the case under test")
    port = free_port()
    proc = subprocess.Popen(roots.chroot_argv(rootfs, "MNMON_RUN_DIR=/tmp/mnmon exec /opt/mnmon/deploy/container/"
                                                      f"entrypoint.sh serve --web.listen-address 127.0.0.1:{port}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        snap = wait_samples(f"http://127.0.0.1:{port}/metrics", 300, alive=lambda: proc.poll() is None,
                            what="the image's entrypoint")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    return snap, out


def test_the_image_headers_serve_and_what_the_kernel_refuses_is_said_in_one_line(served):
    snap, out = served
    lines = [l for l in out.splitlines() if l.startswith("mnmon-image:")]
    assert len(lines) == 1 and "located by the kernel's BTF" in lines[0], out[-2000:]
    assert attached(snap).get("oom:mark_victim") == "tracepoint", (attached(snap), out[-2000:])
    # This kernel refuses fentry and has no kprobes: that, not headers, keeps the core off.
    assert "invalidate_range_start" in not_attached(snap)
    why = [l for l in out.splitlines() if "per-notifier outcomes not countable here" in l]
    assert len(why) == 1 and ("refused by the kernel" in why[0] or "no kprobes" in why[0]), out[-3000:]
    assert "headers" not in why[0]
    assert "Traceback" not in out
