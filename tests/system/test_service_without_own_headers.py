"""The unit on a booted host whose kernel's own headers are not installed, only another
kernel's (host_image.OTHER_HEADERS), as on a host running a kernel Debian does not package:
bcc compiles against those, the kernel's BTF places every field, every probe attaches and the
A/B OOM counts equal the fixture's. Runs after test_service.py in the same guest (it purges
the booted kernel's headers; the fixture was built before)."""
from tests.system import guest_checks, host_image
from tests.system.scrape import attached, not_attached, wait_samples


def test_every_probe_attaches_and_counts_with_another_kernels_headers_only(guest):
    release = guest.kver
    common = release.rsplit("-", 1)[0] + "-common"
    guest.ssh("systemctl stop mnmon")
    guest.ssh(f"dpkg --purge linux-headers-amd64 linux-headers-{release} linux-headers-{common} >/dev/null")
    assert guest.ssh(f"test -e /lib/modules/{release}/build", check=False).returncode != 0
    assert guest.ssh(f"test -d /lib/modules/{host_image.OTHER_HEADERS}/build", check=False).returncode == 0
    guest.ssh("systemctl start mnmon", timeout=400)
    guest.wait_active()
    snap = wait_samples(guest.url + "/metrics", 60)
    on = attached(snap)
    for probe in guest_checks.HOST_PROBES:
        assert probe in on, (probe, on, not_attached(snap))
    assert not not_attached(snap), not_attached(snap)
    doctor = guest.ssh("mnmon doctor", check=False, timeout=400).stdout
    lines = {l.split()[0]: l for l in doctor.splitlines() if l.startswith(("headers ", "layout "))}
    assert f"other: /lib/modules/{host_image.OTHER_HEADERS}/build" in lines["headers"], doctor[-3000:]
    assert "fields from the running kernel's BTF" in lines["layout"] and "missing" not in lines["layout"], lines
    print(f"\n{lines['headers']}\n{lines['layout']}")
    guest_checks.check_ab_oom(guest, f"service with {host_image.OTHER_HEADERS}'s headers only")
