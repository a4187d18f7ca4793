#!/bin/sh
# Installs what mnmon needs on Debian 12 (bookworm) and makes the virtualenv.
#   deploy/install-debian.sh          runtime: bcc, kernel headers, the venv with mnmon
#   deploy/install-debian.sh --test   also what the tests need: the stock kernel and
#                                     qemu for the real-kernel bed, prometheus, openssl,
#                                     mmdebstrap, umoci, e2fsprogs and ssh for fresh
#                                     roots, the image and the booted host
# apt runs only when a package is missing, so a second run is quick.
set -eu
cd "$(dirname "$0")/.."

runtime="python3 python3-venv python3-bpfcc bpfcc-tools kmod make"
# The real-kernel bed boots Debian's stock kernel with the host filesystem as root.
testpkgs="linux-image-amd64 linux-headers-amd64 qemu-system-x86 busybox-static udev
          prometheus openssl gcc make
          dwarves mmdebstrap umoci e2fsprogs openssh-client"
# The kernel matrix (bed/kernels.py): pahole (dwarves) writes module BTF on
# 6.12+; 7.x modules build only in a sid root made with mmdebstrap. The system tier
# (tests/system/) makes fresh Debian 12 roots with mmdebstrap and the image with umoci,
# the booted host's disk with mke2fs -d (e2fsprogs), and reaches that host with ssh
# and ssh-keygen (openssh-client).

want="$runtime"
[ "${1:-}" = "--test" ] && want="$want $testpkgs"

# bcc compiles against the running kernel's headers. A host whose kernel Debian
# does not package (a custom, cloud or sandboxed kernel) gets Debian's current
# headers instead: tracepoint programs compile against any headers, so mnmon
# serves degraded (the struct-reading probes stay off) and says so. Once those
# are installed, apt is not asked again.
if [ ! -e "/lib/modules/$(uname -r)/build" ] &&
   ! dpkg-query -W -f='${Status}\n' linux-headers-amd64 2>/dev/null | grep -q "install ok installed"; then
    want="$want linux-headers-$(uname -r)"
fi

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "install-debian: run as root to install:$missing" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    for p in $missing; do
        case "$p" in
        linux-headers-"$(uname -r)")
            apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
                apt-get install -y -qq --no-install-recommends linux-headers-amd64 >/dev/null 2>&1 ||
                true ;;
        *) echo "$p" ;;
        esac
    done | xargs -r apt-get install -y -qq --no-install-recommends >/dev/null
fi
if [ ! -e "/lib/modules/$(uname -r)/build" ] && [ ! -e /sys/kernel/kheaders.tar.xz ]; then
    # Another kernel's headers serve where the kernel has BTF: mnmon locates every struct
    # field it reads there. Nothing to say then.
    if ! ls /lib/modules/*/build >/dev/null 2>&1; then
        echo "install-debian: no kernel headers at all (linux-headers-amd64 did not install):" \
             "bcc has nothing to compile against" >&2
    elif [ ! -e /sys/kernel/btf/vmlinux ]; then
        echo "install-debian: no headers for kernel $(uname -r) and no BTF to place another kernel's:" \
             "mnmon runs degraded (tracepoint probes only, no per-notifier counts); for every probe," \
             "install its headers under /lib/modules/$(uname -r)/build or boot Debian's linux-image-amd64" >&2
    fi
fi

# The distribution's python3 (not another one on PATH) is the one python3-bpfcc serves.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
if [ "${1:-}" = "--test" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt 2>&1 |
        grep -v '^WARNING: Location' || true
fi
.venv/bin/python -c 'import bcc, click, prometheus_client, yaml' ||
    { echo "install-debian: the virtualenv is incomplete" >&2; exit 1; }
