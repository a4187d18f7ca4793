"""The container image (deploy/container/build-oci.sh, built here without a container
engine) run by podman in the booted guest exactly as deploy/kubernetes/daemonset.yaml
runs it, scraped from the host; its numbers against the fixture's own counts.
Runs after test_service.py (which leaves the fixture loaded): the service is stopped
first, the two would serve on the same port."""
import shlex
import time

import pytest

from tests.system import guest_checks, oci_image
from tests.system.scrape import attached, not_attached, wait_samples


@pytest.fixture(scope="module")
def image(guest):
    size = oci_image.ensure_built()
    print(f"\nimage {oci_image.version()}: {size / 1e6:.0f} MB compressed (OCI layout blobs)")
    guest.ssh("systemctl stop mnmon")
    pulled = guest.ssh(f"podman pull -q oci:{oci_image.IN_GUEST}:{oci_image.version()}", timeout=600)
    _, name, _ = oci_image.podman_args()
    guest.ssh(f"podman tag {pulled.stdout.split()[-1]} {name}")
    yield name
    guest.ssh("podman rm -f mnmon", check=False)


def run(guest, drop_mounts=()):
    """podman run the DaemonSet's container; the first scrape once it serves."""
    args, name, cargs = oci_image.podman_args(drop_mounts=drop_mounts)
    guest.ssh("podman rm -f mnmon >/dev/null 2>&1; true")
    guest.ssh("podman run -d --name mnmon " + " ".join(map(shlex.quote, args + [name] + cargs)), timeout=300)
    state = lambda: guest.ssh("podman inspect -f '{{.State.Status}}' mnmon", check=False).stdout.strip()
    return wait_samples(guest.url + "/metrics", 600, alive=lambda: state() == "running", what="the container")


def logs(guest):
    r = guest.ssh("podman logs mnmon 2>&1", check=False)
    return r.stdout


def test_runs_as_the_daemonset_and_counts_ab_oom_like_the_fixture(guest, image):
    snap = run(guest)
    on = attached(snap)
    for probe in ("invalidate_range_start", "invalidate_range_end", "notifier_register", "oom_reap_task_mm",
                  "oom:mark_victim"):
        assert probe in on, (probe, on, not_attached(snap), logs(guest)[-2000:])
    guest_checks.check_ab_oom(guest, "container")
    assert "Traceback" not in logs(guest)


def test_without_header_mounts_one_line_and_serves(guest, image):
    # The image carries Debian's current headers; the guest boots Debian's current kernel,
    # so they are usually its own: then every probe attaches, else the tracepoints only.
    own = guest.ssh(f"podman run --rm --entrypoint ls {image} /opt/mnmon/headers").stdout.split()
    release = guest.ssh("uname -r").stdout.strip()
    snap = run(guest, drop_mounts=("modules", "usr-src"))
    on = attached(snap)
    assert on.get("oom:mark_victim") == "tracepoint", on
    time.sleep(10)                      # still the same process: no crash loop
    out = logs(guest)
    inspect = guest.ssh("podman inspect -f '{{.State.Status}} {{.RestartCount}}' mnmon").stdout.split()
    assert inspect == ["running", "0"], inspect
    lines = [l for l in out.splitlines() if l.startswith("mnmon-image:")]
    assert len(lines) == 1, out[-2000:]
    if f"linux-headers-{release}" in own:
        assert f"no node headers for kernel {release}" in lines[0] and "which are this kernel's" in lines[0]
        assert "invalidate_range_start" in on, (on, out[-2000:])
    else:
        assert f"no headers for kernel {release}" in lines[0] and "serving degraded" in lines[0], lines
        assert "invalidate_range_start" in not_attached(snap), on
    print(f"\nwithout header mounts (image has {own}, guest runs {release}): {lines[0]}")
    assert "Traceback" not in out
