"""The package's purge on the booted host, last (it takes mnmon away): `apt purge mnmon`
stops the service and leaves nothing of it behind, as a Debian package must."""

# What else carries the name and is not the package's: the bed's checkout, the image
# the container tests pulled, the journal, this test's own list of the package's files.
NOT_THE_PACKAGES = ("/opt/mnmon", "/var/lib/mnmon-image", "/var/lib/containers", "/var/log/journal", "/tmp")
# The package's files (directories are shared with other packages and stay).
FILES = "dpkg-query -L mnmon | while read -r f; do [ -d \"$f\" ] || echo \"$f\"; done"


def test_purge_leaves_nothing(guest):
    guest.ssh(f"{FILES} > /tmp/package-files")
    files = guest.ssh("cat /tmp/package-files").stdout.split()
    assert "/usr/bin/mnmon" in files and "/etc/mnmon/config.yaml" in files, files[:20]
    guest.ssh("systemctl start mnmon", timeout=400)          # running, as when an operator purges
    guest.ssh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq mnmon >/dev/null", timeout=300)
    assert guest.ssh("systemctl is-active mnmon", check=False).stdout.strip() in ("inactive", "unknown")
    assert guest.ssh("dpkg-query -W mnmon", check=False).returncode != 0
    remaining = guest.ssh("while read -r f; do [ ! -e \"$f\" ] && [ ! -L \"$f\" ] || echo \"$f\"; "
                          "done < /tmp/package-files").stdout.split()
    assert not remaining, remaining
    prune = " -o ".join(f"-path {p}" for p in NOT_THE_PACKAGES)
    left = guest.ssh(f"find / -xdev \\( {prune} \\) -prune -o -iname '*mnmon*' -print; "
                     "find /run -iname '*mnmon*'").stdout.split()
    assert not left, left
    print(f"\napt purge mnmon: {len(files)} files and the service gone, nothing named mnmon left")
