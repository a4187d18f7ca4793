"""The container image (deploy/container/build-oci.sh, built here without a container
engine) run by podman in the booted guest exactly as deploy/kubernetes/daemonset.yaml
runs it, scraped from the host; its numbers against the fixture's own counts.
Runs after test_service.py (which leaves the fixture loaded): the service is stopped
first, the two would serve on the same port."""
import shlex

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


CORE_PROBES = ("invalidate_range_start", "invalidate_range_end", "notifier_register", "oom_reap_task_mm",
               "oom:mark_victim")


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
    for probe in CORE_PROBES:
        assert probe in on, (probe, on, not_attached(snap), logs(guest)[-2000:])
    guest_checks.check_ab_oom(guest, "container")
    assert "Traceback" not in logs(guest)


def test_the_image_holds_the_package_the_host_installed(guest, image):
    # Built from the same package (build-oci.sh installs make deb's): same version, same files.
    q = "dpkg-query -W -f '${Version} ${Status}\\n' mnmon"
    in_image = guest.ssh(f"podman run --rm --entrypoint sh {image} -c {shlex.quote(q)}").stdout.split()
    on_host = guest.ssh(q).stdout.split()
    assert in_image == on_host and in_image[0] == oci_image.version() and in_image[-1] == "installed", \
        (in_image, on_host)
    md5 = "md5sum /usr/bin/mnmon /usr/lib/python3/dist-packages/monitor/__main__.py /usr/share/mnmon/bpf/*"
    assert guest.ssh(f"podman run --rm --entrypoint sh {image} -c {shlex.quote(md5)}").stdout == \
        guest.ssh(md5).stdout


def test_without_header_mounts_every_probe_attaches_and_counts_ab_oom(guest, image):
    # A node that mounts none of its headers: the image's own (Debian's current) compile, and
    # the kernel's BTF places every field, whether they are this kernel's or not.
    own = guest.ssh(f"podman run --rm --entrypoint ls {image} /opt/mnmon/headers").stdout.split()
    release = guest.ssh("uname -r").stdout.strip()
    snap = run(guest, drop_mounts=("modules", "usr-src"))
    on = attached(snap)
    out = logs(guest)
    for probe in CORE_PROBES:
        assert probe in on, (probe, on, not_attached(snap), out[-2000:])
    lines = [l for l in out.splitlines() if l.startswith("mnmon-image:")]
    assert len(lines) == 1 and f"no node headers for kernel {release}" in lines[0], out[-2000:]
    assert "degraded" not in lines[0], lines
    guest_checks.check_ab_oom(guest, "container without header mounts")
    inspect = guest.ssh("podman inspect -f '{{.State.Status}} {{.RestartCount}}' mnmon").stdout.split()
    assert inspect == ["running", "0"], inspect
    print(f"\nwithout header mounts (image has {own}, guest runs {release}): {lines[0]}")
    assert "Traceback" not in logs(guest)
