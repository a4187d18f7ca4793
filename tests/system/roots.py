"""Fresh Debian 12 roots, as a new host has them, made with mmdebstrap from Debian's
archive and cached under build/system/.

A root is a tarball keyed by what it holds: remove build/system/ to refetch.
Downloaded packages are kept in build/system/apt-archives/ and bound into each
root's /var/cache/apt/archives, so installing mnmon there again is quick.
"""
import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "system"
APT_ARCHIVES = BUILD / "apt-archives"
# What /etc/apt/sources.list of a Debian 12 install names.
SOURCES = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]


class RootError(Exception):
    """A root could not be made; the message says why."""


def root_tar(name, include=(), variant="minbase"):
    """The cached tarball of a bookworm root with these extra packages; made when missing."""
    key = hashlib.sha256(repr((variant, sorted(include), SOURCES)).encode()).hexdigest()[:12]
    tar = BUILD / f"{name}-{key}.tar"
    if tar.exists():
        return tar
    if not shutil.which("mmdebstrap"):
        raise RootError("mmdebstrap is missing (deploy/install-debian.sh --test installs it)")
    BUILD.mkdir(parents=True, exist_ok=True)
    part = tar.with_suffix(".part")
    argv = ["mmdebstrap", "--quiet", "--format=tar", f"--variant={variant}", "--skip=cleanup/apt/cache"]
    if include:
        argv.append("--include=" + ",".join(include))
    r = subprocess.run(argv + ["bookworm", str(part)] + SOURCES, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RootError(f"mmdebstrap {name} failed: {r.stdout.strip().splitlines()[-1:]}")
    part.rename(tar)
    return tar


def unpack(tar, dest):
    """A fresh copy of the root in dest (removed first)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xpf", str(tar)], check=True)
    return dest


def trust_local_cas(root):
    """The host's own added CAs (/usr/local/share/ca-certificates), as a site's install
    would carry them: a network that inspects TLS needs them to reach the archives."""
    local = Path("/usr/local/share/ca-certificates")
    if local.is_dir() and any(local.iterdir()):
        shutil.copytree(local, root / local.relative_to("/"), dirs_exist_ok=True)
        in_chroot(root, "update-ca-certificates >/dev/null 2>&1 || true", check=True)


def copy_checkout(root, path="opt/mnmon"):
    """The repository's files (tracked and new, not ignored ones) as a user's checkout at root/path."""
    dest = root / path
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, stdout=subprocess.PIPE).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def chroot_argv(root, command):
    """Run command (a shell string) chrooted in root, in a mount namespace of its own:
    /proc, /sys (with tracefs and bpffs under it), /dev and the apt cache bound in,
    all gone when the command ends."""
    APT_ARCHIVES.mkdir(parents=True, exist_ok=True)
    r = shlex.quote(str(root))
    script = "\n".join([
        "set -e",
        f"mount -t proc proc {r}/proc",
        f"mount --rbind /sys {r}/sys",
        f"mount --rbind /dev {r}/dev",
        f"mkdir -p {r}/var/cache/apt/archives",
        f"mount --bind {shlex.quote(str(APT_ARCHIVES))} {r}/var/cache/apt/archives",
        f"cp /etc/resolv.conf {r}/etc/resolv.conf",
        f"exec chroot {r} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "
        f"LANG=C.UTF-8 /bin/sh -c {shlex.quote(command)}",
    ])
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]


def in_chroot(root, command, **kw):
    """subprocess.run of command chrooted in root (see chroot_argv)."""
    return subprocess.run(chroot_argv(root, command), **kw)
