"""Fetch a stock Debian kernel (image, modules, headers) into build/kernels/<release>/.

Nothing is installed into the system: apt runs with a private state (its own
sources list, lists and cache under build/kernels/apt/), packages are fetched
with `apt-get download NAME=VERSION` pinned below and unpacked with `dpkg -x`.
The bed boots root/boot/vmlinuz-<release> (virtme-ng finds the modules beside it
under root/lib/modules/<release>), the fixture builds against
root/lib/modules/<release>/build, and bcc in the guest follows the same links.

    python -m bed.kernels fetch 5.10.0-46-amd64
    python -m bed.kernels path 5.10.0-46-amd64    # the image, fetched if need be
    python -m bed.kernels build-module 7.2.13+deb14-amd64 build/fixture/7.2.13+deb14-amd64
    python -m bed.kernels list
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
# Kernels whose modules build only in a root of their own suite: 7.x headers want
# gcc-16 and glibc 2.38, Debian 12 has gcc-12 and 2.36.
BUILD_ROOTS = {"7.2.13+deb14-amd64": "sid"}
ROOTS = REPO / "build" / "roots"
ROOT_PACKAGES = ["make", "gcc-16", "libc6-dev", "dwarves", "kmod"]


def version_key(release):
    """Sort key of a release string: '5.10.0-46-amd64' before '6.1.0-57-amd64'."""
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.split(r"[.+-]", release)]


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


def build_root(suite, roots=ROOTS):
    """A minimal root of suite (mmdebstrap, cached under build/roots/) to build modules in."""
    root = roots / suite
    if (root / ".complete").exists():
        return root
    tmp = roots / f"{suite}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    roots.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mmdebstrap", "--variant=apt", "--mode=root", "--quiet",
                        '--aptopt=Acquire::Check-Valid-Until "false"',
                        "--include=" + ",".join(ROOT_PACKAGES), suite, str(tmp), ARCHIVE],
                       capture_output=True, text=True)
    if p.returncode:
        raise KernelError(f"mmdebstrap {suite}: {(p.stderr.strip().splitlines() or ['failed'])[-1]}")
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    (root / ".complete").touch()
    return root


def build_module(release, moddir, cache=CACHE):
    """Build the out-of-tree module in moddir against release's headers: on this host with
    the compiler Debian used when it is here, else inside the kernel's own suite root."""
    kdir = fetch(release, cache)
    moddir = Path(moddir).resolve()
    suite = BUILD_ROOTS.get(release)
    if not suite:
        headers = kdir / "root" / "lib" / "modules" / release / "build"
        m = re.search(r"^CC = .*?(gcc-\d+)$", (headers / ".kernelvariables").read_text(), re.M)
        cc = m.group(1) if m and shutil.which(m.group(1)) else "gcc"
        argv = ["make", "-s", "-C", str(headers), f"M={moddir}", f"CC={cc}", "modules"]
        return subprocess.run(argv).returncode
    root = build_root(suite)
    if not (root / "usr" / "src" / f"linux-headers-{release}").is_dir():
        for deb in sorted((kdir / "debs").glob("linux-[hk]*.deb")):     # headers and kbuild
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    inside = root / "tmp" / f"mnmon-module-{release}"
    if inside.exists():
        shutil.rmtree(inside)
    shutil.copytree(moddir, inside)
    # objtool reads /proc: a proc mount in a private mount namespace, gone with it.
    make = f"make -s -C /usr/src/linux-headers-{release} M=/tmp/{inside.name} modules"
    rc = subprocess.run(["unshare", "--mount", "--", "sh", "-c",
                         f'mount -t proc proc "$1/proc" && exec chroot "$1" {make}', "sh", str(root)]).returncode
    for ko in inside.glob("*.ko"):
        shutil.copy2(ko, moddir / ko.name)
    shutil.rmtree(inside)
    return rc


def image(release, cache=CACHE):
    """The kernel image the bed boots, fetching the kernel first if need be."""
    return fetch(release, cache) / "root" / "boot" / f"vmlinuz-{release}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["fetch", "path", "headers", "list", "build-module"])
    ap.add_argument("release", nargs="?")
    ap.add_argument("moddir", nargs="?", help="build-module: the module's directory (Kbuild and sources)")
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
        elif args.action == "build-module":
            return build_module(args.release, args.moddir or ".")
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
