#!/bin/sh
# mnmon's container image without a container engine: a Debian 12 root made by
# mmdebstrap, mnmon's Debian package installed in it by setup-image.sh (as the
# Containerfile does), packed by umoci into an OCI layout tagged with mnmon's version.
#   deploy/container/build-oci.sh [LAYOUT]      default build/oci
# Then, e.g.: podman pull oci:build/oci:0.1.0, or skopeo copy oci:build/oci:0.1.0 docker://REGISTRY/mnmon:0.1.0
set -eu
cd "$(dirname "$0")/../.."
layout=${1:-build/oci}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' monitor/__init__.py)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The image is made from mnmon's Debian package (make deb, which stamps the commit for
# `mnmon --version`), as a host installs it, plus this directory's scripts.
make --no-print-directory deb >/dev/null
revision=$(sed -n 's/^COMMIT = "\(.*\)"$/\1/p' build/deb/src/monitor/_build.py)
mkdir -p "$work/src/deploy/container"
cp deploy/container/setup-image.sh deploy/container/entrypoint.sh "$work/src/deploy/container/"
cp "build/deb/mnmon_${version}_all.deb" "$work/src/mnmon.deb"

mmdebstrap --quiet --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="mkdir -p \"\$1/opt/mnmon\"" --customize-hook="sync-in $work/src /opt/mnmon" \
    --customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh /opt/mnmon/deploy/container/setup-image.sh' \
    bookworm "$work/rootfs.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"

rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$work/bundle" >/dev/null
tar -C "$work/bundle/rootfs" --numeric-owner -xpf "$work/rootfs.tar"
umoci repack --image "$layout:$version" "$work/bundle"
umoci config --image "$layout:$version" \
    --config.entrypoint /opt/mnmon/deploy/container/entrypoint.sh --config.cmd serve \
    --config.env MNMON_RUN_DIR=/tmp/mnmon --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.exposedports 7668/tcp --config.workingdir / \
    --config.label org.opencontainers.image.version="$version" \
    --config.label org.opencontainers.image.revision="$revision" \
    --config.label org.opencontainers.image.title=mnmon
umoci gc --layout "$layout"
echo "build-oci: $layout:$version ($(du -sh "$layout" | cut -f1) compressed)"
