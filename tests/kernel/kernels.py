"""Fetch a stock Debian kernel (image, modules, headers) into build/kernels/<release>/.

Nothing is installed into the system: apt runs with a private state (its own
sources list, lists and cache under build/kernels/apt/), packages are fetched
with `apt-get download NAME=VERSION` pinned below and unpacked with `dpkg -x`.
The bed boots root/boot/vmlinuz-<release> (virtme-ng finds the modules beside it
under root/lib/modules/<release>), the fixture builds against
root/lib/modules/<release>/build, and bcc in the guest follows the same links.

    python -m tests.kernel.kernels fetch 5.10.0-46-amd64
    python -m tests.kernel.kernels path 5.10.0-46-amd64    # the image, fetched if need be
    python -m tests.kernel.kernels list
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "kernels"
ARCHIVE = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"

# Kernel release -> (Debian package version, suites that serve it). Pinned: a matrix
# leg must boot the same kernel tomorrow. Security suites drop old ABIs; when one
# goes, move the pin to what the archive serves (`apt-cache policy` in the private state).
KERNELS = {
    "5.10.0-46-amd64": ("5.10.262-1", ["bullseye", "bullseye-security"]),
    "6.1.0-57-amd64": ("6.1.192-3", ["bookworm", "bookworm-security"]),
    "6.12.117+deb12-amd64": ("6.12.117-1~deb12u1", ["bookworm-security"]),
    "7.2.13+deb14-amd64": ("7.2.13-1", ["sid"]),
}


class KernelError(Exception):
    """The kernel cannot be fetched or unpacked; the message says why."""


def sources_list(suites):
    """The private sources.list for suites: one line per suite, security ones from their own host."""
    lines = []
    for s in suites:
        url = SECURITY if s.endswith("-security") else ARCHIVE
        lines.append(f"deb {url} {s} main")
    return "\n".join(lines) + "\n"


def apt_config(state):
    """apt.conf text keeping every apt file under state (the system's apt is not touched)."""
    return "".join(f'{k} "{v}";\n' for k, v in [
        ("Dir::State", state / "state"),
        ("Dir::State::status", state / "state" / "status"),
        ("Dir::Cache", state / "cache"),
        ("Dir::Etc::SourceList", state / "sources.list"),
        ("Dir::Etc::SourceParts", state / "sources.list.d"),
        ("Dir::Etc::Preferences", state / "preferences"),
        ("Dir::Etc::PreferencesParts", state / "preferences.d"),
        ("APT::Architecture", "amd64"),
        ("Acquire::Languages", "none"),
        # The versions are pinned and signatures still checked; a Release file past its
        # Valid-Until (a stale mirror, sid's week) must not stop a pinned fetch.
        ("Acquire::Check-Valid-Until", "false"),
        ("Debug::NoLocking", "true"),    # the private state has no lock to share
    ])


def wanted(name, abi):
    """Whether a dependency of the kernel's packages is part of the kernel: its image,
    modules, headers and kbuild, not generic tools (linux-base, compilers, initramfs)."""
    if not name.startswith("linux-") or name.startswith(("linux-compiler-", "linux-initramfs-tool")):
        return False
    return abi in name or name.startswith("linux-kbuild-")


def depends(control_text):
    """Package names a control stanza depends on (first alternative of each)."""
    names = []
    for field in ("Pre-Depends", "Depends"):
        m = re.search(rf"^{field}: (.*)$", control_text, re.M)
        if m:
            names += [d.split("|")[0].split("(")[0].strip() for d in m.group(1).split(",")]
    return names


class Apt:
    """apt-get/apt-cache on a private state under dir."""

    def __init__(self, dir, suites):
        self.dir = dir
        for d in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (dir / d).mkdir(parents=True, exist_ok=True)
        (dir / "state" / "status").touch()
        want = sources_list(suites)
        src = dir / "sources.list"
        stale = not src.exists() or src.read_text() != want
        src.write_text(want)
        (dir / "apt.conf").write_text(apt_config(dir))
        self.env = dict(os.environ, APT_CONFIG=str(dir / "apt.conf"), DEBIAN_FRONTEND="noninteractive")
        if stale or not any((dir / "state" / "lists").glob("*_Packages")):
            self.run(["apt-get", "update", "-qq"])

    def run(self, argv, cwd=None):
        p = subprocess.run(argv, env=self.env, cwd=cwd, capture_output=True, text=True)
        if p.returncode:
            err = (p.stderr.strip().splitlines() or ["failed"])[-1]
            raise KernelError(f"{' '.join(argv[:3])}: {err}")
        return p.stdout

    def show(self, name, version):
        out = self.run(["apt-cache", "show", f"{name}={version}"])
        return out.split("\n\n")[0]


def packages(apt, release, version):
    """The kernel's package names, from the image and headers down their dependencies."""
    abi = release.rsplit("-", 1)[0]
    todo, seen = [f"linux-image-{release}", f"linux-headers-{release}"], []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        todo += [d for d in depends(apt.show(name, version)) if wanted(d, abi) and d not in seen]
    return sorted(seen)


def fetch(release, cache=CACHE):
    """Fetch and unpack release into cache/release; returns that directory. Idempotent."""
    if release not in KERNELS:
        raise KernelError(f"unknown kernel {release!r}; pinned: {', '.join(KERNELS)}")
    kdir = cache / release
    if (kdir / "kernel.json").exists():
        return kdir
    version, suites = KERNELS[release]
    apt = Apt(cache / "apt" / "-".join(suites), suites)
    names = packages(apt, release, version)
    debs = kdir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    root = kdir / "root"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir()
    for name in names:
        if not list(debs.glob(f"{name}_*.deb")):
            apt.run(["apt-get", "download", "-qq", f"{name}={version}"], cwd=debs)
        deb = next(debs.glob(f"{name}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    layout(root, release)
    (kdir / "kernel.json").write_text(json.dumps(
        {"release": release, "version": version, "suites": suites, "packages": names}, indent=1) + "\n")
    return kdir


def layout(root, release):
    """Make the unpacked tree look installed, relative to root: modules indexed,
    build/source links and the headers' Makefile pointing into root, not /usr/src."""
    # Newer packages ship only usr/lib/modules (merged /usr); depmod -b and virtme look under lib/.
    if not (root / "lib").exists():
        (root / "lib").symlink_to("usr/lib")
    mods = root / "lib" / "modules" / release
    if not (root / "boot" / f"vmlinuz-{release}").exists() and (mods / "vmlinuz").exists():
        (root / "boot").mkdir(exist_ok=True)
        (root / "boot" / f"vmlinuz-{release}").symlink_to(mods / "vmlinuz")
    headers = root / "usr" / "src" / f"linux-headers-{release}"
    common = root / "usr" / "src" / f"linux-headers-{release.rsplit('-', 1)[0]}-common"
    if not headers.is_dir():
        raise KernelError(f"{release}: no headers unpacked under {headers}")
    for link, target in (("build", headers), ("source", common)):
        p = mods / link
        if p.is_symlink() or p.exists():
            p.unlink()
        if target.is_dir():
            p.symlink_to(target)
    mk = headers / "Makefile"
    mk.write_text(re.sub(r"/usr/src/", f"{root}/usr/src/", mk.read_text()))
    subprocess.run(["depmod", "-b", str(root), release], check=True)


def image(release, cache=CACHE):
    """The kernel image the bed boots, fetching the kernel first if need be."""
    return fetch(release, cache) / "root" / "boot" / f"vmlinuz-{release}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["fetch", "path", "headers", "list"])
    ap.add_argument("release", nargs="?")
    args = ap.parse_args(argv)
    try:
        if args.action == "list":
            for r, (v, s) in KERNELS.items():
                state = "fetched" if (CACHE / r / "kernel.json").exists() else "-"
                print(f"{r:24} {v:22} {','.join(s):28} {state}")
        elif not args.release:
            ap.error("a kernel release is needed")
        elif args.action == "fetch":
            print(fetch(args.release))
        elif args.action == "path":
            print(image(args.release))
        else:
            print(fetch(args.release) / "root" / "lib" / "modules" / args.release / "build")
    except KernelError as e:
        print(f"kernels: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
