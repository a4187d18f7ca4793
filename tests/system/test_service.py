"""mnmon under systemd on a booted Debian 12 host (tests/system/host_image.py): the unit
the Debian package installed and enabled (deploy/systemd/'s, its paths the package's),
scraped from this side of QEMU's user network, its numbers against the fixture module's
own counts."""
import re
import time

import pytest

from tests.system import guest_checks
from tests.system.scrape import attached, not_attached, wait_samples

@pytest.fixture(scope="module")
def service(guest):
    pid = guest.wait_active()
    return pid


def test_active_through_ready_and_exposure(guest, service):
    show = dict(l.split("=", 1) for l in guest.ssh("systemctl show -p Type -p NotifyAccess -p ActiveState "
                                                   "-p FragmentPath mnmon.service").stdout.split())
    # Type=notify: systemd says active only once mnmon sent READY=1.
    assert show["Type"] == "notify" and show["ActiveState"] == "active", show
    assert show["FragmentPath"] == "/lib/systemd/system/mnmon.service"
    assert guest.ssh("cd /opt/mnmon && sed -f debian/unit.sed deploy/systemd/mnmon.service | "
                     "cmp - /lib/systemd/system/mnmon.service", check=False).returncode == 0, \
        "the package's unit must be deploy/systemd/'s with the package's paths"
    # Enabled by the package, as Debian's helpers do: it came up at boot.
    assert guest.ssh("systemctl is-enabled mnmon.service").stdout.strip() == "enabled"
    sec = guest.ssh("systemd-analyze security mnmon.service --no-pager", check=False).stdout
    m = re.search(r"Overall exposure level for mnmon\.service: ([0-9.]+)", sec)
    assert m, sec[-1500:]
    print(f"\nsystemd-analyze security (booted): exposure {m.group(1)}")
    assert float(m.group(1)) <= 3.0, sec


def test_probes_attached_as_on_the_bed(guest, service):
    snap = wait_samples(guest.url + "/metrics", 60)
    on = attached(snap)
    for probe in guest_checks.HOST_PROBES:
        assert probe in on, (probe, on, not_attached(snap))
    assert not not_attached(snap), not_attached(snap)


def test_ab_oom_counts_equal_the_fixture(guest, service):
    guest_checks.check_ab_oom(guest, "service")


def test_reload_applies_a_changed_config_and_keeps_it_over_a_broken_one(guest, service):
    cfg = "/etc/mnmon/config.yaml"
    guest.ssh(f"cp {cfg} /root/config.yaml.orig && "
              f"sed -i 's|^  telemetry_path: /metrics|  telemetry_path: /reloaded|' {cfg} && "
              "systemctl reload mnmon")
    assert guest.ssh(f"grep -c '^  telemetry_path: /reloaded' {cfg}").stdout.strip() == "1"
    assert _serves(guest.url + "/reloaded")
    assert _status(guest.url + "/metrics") == 404
    cursor = guest.ssh("journalctl -u mnmon -n 0 --show-cursor --no-pager").stdout.split("cursor: ")[-1].strip()
    guest.ssh(f"echo 'web: [unclosed' >> {cfg} && systemctl reload mnmon")
    assert guest.wait_active() == service            # the same process, still serving
    assert "mnmon_probe_attached" in _text(guest.url + "/reloaded")
    lines = guest.ssh(f"journalctl -u mnmon --after-cursor '{cursor}' --no-pager -o cat").stdout.splitlines()
    failed = [l for l in lines if "reload failed" in l]
    assert len(failed) == 1, lines
    guest.ssh(f"cp /root/config.yaml.orig {cfg} && systemctl reload mnmon")
    assert _serves(guest.url + "/metrics")


def test_restart_and_kill_come_back_and_count(guest, service):
    guest.ssh("systemctl restart mnmon")
    pid = guest.wait_active()
    assert pid != service
    got, fx = guest_checks.churn(guest)
    assert got == fx > 0, (got, fx)
    print(f"\nafter restart: churn mnmon {got} fixture {fx}")
    guest.ssh(f"kill -9 {pid}")
    time.sleep(2)
    pid2 = guest.wait_active()                      # Restart=on-failure, RestartSec=5s
    assert pid2 != pid
    got, fx = guest_checks.churn(guest)
    assert got == fx > 0, (got, fx)
    print(f"after kill -9: churn mnmon {got} fixture {fx}")


def test_journal_has_no_traceback(guest, service):
    journal = guest.ssh("journalctl -b -u mnmon --no-pager -o cat").stdout
    assert "Traceback" not in journal, journal[-3000:]
    assert "listening on" in journal
    # What the unit's sandbox would refuse bcc shows up as EPERM/EACCES, even where a
    # fallback hides it from the probes' states.
    refused = [l for l in journal.splitlines()
               if re.search(r"Operation not permitted|Permission denied|EPERM|EACCES", l)]
    assert not refused, refused
    warnings = guest.ssh("journalctl -b -u mnmon -p warning --no-pager -o cat").stdout.strip()
    print(f"\njournal of mnmon at warning level or above: {warnings.splitlines() or 'none'}")


def _serves(url, seconds=20):
    """url answers with mnmon's metrics within seconds. `systemctl reload` returns once
    ExecReload's kill -HUP is sent, before the daemon has read the file (Debian 12's
    systemd 252 has no Type=notify-reload to wait for it)."""
    deadline = time.monotonic() + seconds
    while _status(url) != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    return "mnmon_probe_attached" in _text(url)


def _text(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def _status(url):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
