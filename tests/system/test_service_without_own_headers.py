"""A booted host whose kernel's own headers are not installed, only another kernel's
(host_image.OTHER_HEADERS), as on a host running a kernel Debian does not package: bcc
compiles against those, the kernel's BTF places every field, every probe attaches and the
A/B OOM counts equal the fixture's. First the unit the package installed, then the README's
main command, `deploy/run`, on a host whose apt cannot give this kernel's headers either.
Runs after test_service.py in the same guest (it purges the booted kernel's headers; the
fixture was built before)."""
import time

from tests.system import guest_checks, host_image
from tests.system.scrape import attached, not_attached, wait_samples


def _own_headers(guest):
    release = guest.kver
    return [f"linux-headers-{release}", f"linux-headers-{release.rsplit('-', 1)[0]}-common"]


def test_every_probe_attaches_and_counts_with_another_kernels_headers_only(guest):
    release = guest.kver
    guest.ssh("systemctl stop mnmon")
    guest.ssh(f"dpkg --purge linux-headers-amd64 {' '.join(_own_headers(guest))} >/dev/null")
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


def test_deploy_run_where_apt_has_no_headers_for_the_kernel(guest):
    # As on a kernel Debian does not package: apt offers no headers for it (pinned away
    # here), so deploy/run's install finds none to add and the other kernel's serve.
    guest.ssh("systemctl stop mnmon")
    pin = f"Package: {' '.join(_own_headers(guest))}\\nPin: release *\\nPin-Priority: -1\\n"
    guest.ssh(f"printf '{pin}' > /etc/apt/preferences.d/no-own-headers")
    t0 = time.monotonic()
    run = guest.popen("cd /opt/mnmon && exec deploy/run 2>&1")
    try:
        snap = wait_samples(guest.url + "/metrics", 900, alive=lambda: run.poll() is None, what="deploy/run")
        served = time.monotonic() - t0
        on = attached(snap)
        for probe in guest_checks.HOST_PROBES:
            assert probe in on, (probe, on, not_attached(snap))
        assert not not_attached(snap), not_attached(snap)
        assert guest.ssh(f"test -e /lib/modules/{guest.kver}/build", check=False).returncode != 0
        guest_checks.check_ab_oom(guest, f"deploy/run with {host_image.OTHER_HEADERS}'s headers only")
        print(f"deploy/run (its install included, in the guest): served after {served:.0f} s")
    finally:
        guest.ssh("pkill -TERM -f '.venv/bin/mnmon serve'", check=False)
        out, _ = run.communicate(timeout=120)
        guest.ssh("rm -f /etc/apt/preferences.d/no-own-headers")
    assert "Traceback" not in out, out[-3000:]
