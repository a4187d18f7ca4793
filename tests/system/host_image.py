"""A fresh Debian 12 host on its own disk: made like a new server, then booted.

The root (mmdebstrap: systemd, Debian's stock kernel, ssh, podman) gets mnmon the way
the README installs it on a host: `apt install ./mnmon_<version>_all.deb` (make deb),
which brings the kernel headers it recommends and enables the unit. A checkout at
/opt/mnmon holds the bed (the fixture module, built in that root for its own kernel, and
the scenarios, run by the root's python3). The disk image is made with mke2fs -d (no
loop device), the guest boots it under QEMU (TCG, one vCPU, -cpu max) with systemd
as PID 1, and the host reaches it through QEMU's user network: a forwarded port
for /metrics, another for ssh with a key made here.
"""
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from bed import kernels, slots
from tests.support.mnmon_proc import free_port
from tests.system import roots

PACKAGES = ["systemd-sysv", "udev", "dbus", "linux-image-amd64", "openssh-server", "iproute2", "procps",
            "kmod", "podman", "crun", "ca-certificates", "make"]
# Another kernel's headers beside the booted kernel's own (Debian 12's 6.12, as the matrix pins
# it): test_service_without_own_headers.py purges the own ones and keeps these. Unpacked, not
# installed: the package depends on its kernel's image, which would give the root two kernels.
OTHER_HEADERS = "6.12.117+deb12-amd64"
assert OTHER_HEADERS in kernels.KERNELS
_OTHER = OTHER_HEADERS.rsplit("-", 1)[0]
DOWNLOAD_OTHER_HEADERS = (f"mkdir -p /tmp/other-headers && cd /tmp/other-headers && apt-get download -qq "
                          f"linux-headers-{OTHER_HEADERS} linux-headers-{_OTHER}-common linux-kbuild-{_OTHER}")
NETWORK = """[Match]
Name=en*
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
"""


def _unpack_other_headers(root):
    """OTHER_HEADERS' three packages, unpacked from outside (the root has no dpkg-deb) into a
    scratch directory first, then merged: unpacked over the root, the packages' /lib would
    replace the root's /lib -> usr/lib link (merged /usr) with a directory, and init dies."""
    debs = sorted((root / "tmp/other-headers").glob("*.deb"))
    assert len(debs) == 3, debs
    scratch = root / "tmp/other-headers/tree"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch)], check=True)
        deb.unlink()
    for top in sorted(scratch.iterdir()):
        into = root / "usr" / top.name if top.name in ("lib", "bin", "sbin") else root / top.name
        into.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", f"{top}/.", str(into)], check=True)
    subprocess.run(["rm", "-rf", str(root / "tmp/other-headers")], check=True)
    assert (root / "lib").is_symlink(), "the root's /lib is no longer merged /usr's link"


def debian_package():
    """build/deb/mnmon_<version>_all.deb, made by `make deb` from this checkout."""
    r = subprocess.run(["make", "--no-print-directory", "deb"], cwd=roots.REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise roots.RootError(f"make deb failed: {r.stdout[-3000:]}")
    from monitor import __version__
    return roots.REPO / "build" / "deb" / f"mnmon_{__version__}_all.deb"


def make_root(dest, extra=None):
    """The host's root in dest, mnmon installed and enabled; returns the kernel release."""
    root = roots.unpack(roots.root_tar("host", PACKAGES), dest)
    roots.trust_local_cas(root)
    roots.copy_checkout(root)
    key = ssh_key()
    (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / "root/.ssh/authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (root / "etc/systemd/network/10-user.network").write_text(NETWORK)
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
    (root / "etc/hostname").write_text("mnmon-host\n")
    # The kernel the root boots: the one with an image (OTHER_HEADERS' has only headers).
    kvers = [p.name for p in (root / "lib/modules").iterdir() if (root / "boot" / f"vmlinuz-{p.name}").exists()]
    assert len(kvers) == 1, kvers
    deb = debian_package()
    shutil.copy(deb, root / "tmp" / deb.name)
    # As the README says (recommended packages included, as apt installs them).
    r = roots.in_chroot(root, " && ".join([
        "apt-get update -qq",
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/{deb.name} >/dev/null",
        f"rm /tmp/{deb.name}",
        "systemctl enable systemd-networkd.service",
        "cd /opt/mnmon",
        # The bed's fixture, built against this root's own kernel headers.
        f"make -s fixture KVER={kvers[0]}",
        DOWNLOAD_OTHER_HEADERS,
    ]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise roots.RootError(f"installing mnmon in the host root failed: {r.stdout[-3000:]}")
    _unpack_other_headers(root)
    if extra:
        extra(root)
    return kvers[0], r.stdout


def make_disk(root, image, size="8G"):
    """An ext4 disk image holding root (mke2fs -d: no loop device, no mount)."""
    if image.exists():
        image.unlink()
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "root", "-d", str(root), str(image), size], check=True)
    return image


def ssh_key():
    key = roots.BUILD / "ssh_key"
    if not key.exists():
        roots.BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


class Guest:
    """The booted host: QEMU holding a guest slot for its whole life."""

    def __init__(self, root, image, console):
        self.metrics_port, self.ssh_port = free_port(), free_port()
        self.console = console
        # One guest per core (bed/slots.py), held for the guest's whole life.
        self._slot = slots.slot()
        self._slot.__enter__()
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "2G",
            "-kernel", str(root / "vmlinuz"), "-initrd", str(root / "initrd.img"),
            # The OOM scenario logs ~1000 reaper lines; the default 128 KiB buffer would drop some.
            "-append", "root=/dev/vda rw console=ttyS0 log_buf_len=8M quiet",
            # snapshot: the image stays as made; the guest's writes go to a temporary file.
            "-drive", f"file={image},format=raw,if=virtio,snapshot=on",
            "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{self.metrics_port}-:7668,"
                    f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-display", "none", "-serial", f"file:{console}", "-no-reboot",
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.metrics_port}"

    def wait_ssh(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited {self.proc.returncode}; console: {self.console}")
            if self.ssh("true", timeout=30, check=False).returncode == 0:
                return
            time.sleep(2)
        raise RuntimeError(f"no ssh into the guest within {timeout} s; console: {self.console}")

    def _ssh_argv(self, command):
        return ["ssh", "-q", "-i", str(ssh_key()), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", "root@127.0.0.1", command]

    def popen(self, command):
        """A shell command in the guest with pipes to talk to it (text)."""
        return subprocess.Popen(self._ssh_argv(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def ssh(self, command, timeout=600, check=True):
        """Run a shell command in the guest as root; CompletedProcess with text output."""
        argv = self._ssh_argv(command)
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return subprocess.CompletedProcess(argv, 255, "", "timeout")
        if check and r.returncode != 0:
            raise RuntimeError(f"guest: {command}: exit {r.returncode}: {(r.stdout + r.stderr)[-2000:]}")
        return r

    def wait_active(self, unit="mnmon.service", timeout=300):
        """Until unit is active (Type=notify: after READY=1); its MainPID."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.ssh(f"systemctl show -p ActiveState -p SubState -p MainPID {unit}", check=False).stdout
            props = dict(l.split("=", 1) for l in state.split())
            if props.get("ActiveState") == "active" and props.get("SubState") == "running":
                return int(props["MainPID"])
            if props.get("ActiveState") == "failed":
                break
            time.sleep(2)
        log = self.ssh(f"journalctl -b -u {unit} --no-pager | tail -20", check=False).stdout
        raise RuntimeError(f"{unit} not active: {state.split()}; journal:\n{log}")

    def python(self, module, *args, timeout=600):
        """python -m module in the guest's mnmon checkout (the bed needs only the standard library)."""
        return self.ssh(f"cd /opt/mnmon && python3 -m {module} " + " ".join(map(shlex.quote, args)),
                        timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.ssh("systemctl poweroff", timeout=30, check=False)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._slot.__exit__(None, None, None)
