#!/bin/sh
# mnmon's container image without a container engine: a Debian 12 root made by
# mmdebstrap, set up by setup-image.sh (as the Containerfile does), packed by umoci
# into an OCI layout tagged with mnmon's version.
#   deploy/container/build-oci.sh [LAYOUT]      default build/oci
# Then, e.g.: podman pull oci:build/oci:0.1.0, or skopeo copy oci:build/oci:0.1.0 docker://REGISTRY/mnmon:0.1.0
set -eu
cd "$(dirname "$0")/../.."
layout=${1:-build/oci}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' monitor/__init__.py)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The checkout as git sees it, less the tests, the test bed and benchmarks (as .containerignore
# says): no virtualenv, no build outputs. tests/system/oci_image.py rebuilds the
# image when these files change, so keep the two lists alike.
mkdir "$work/src"
git ls-files -co --exclude-standard -z -- . ':!tests' ':!bench' ':!bed' | xargs -0 cp --parents -t "$work/src"
# The commit built, for `mnmon --version` (monitor/build.py); "-dirty" when the checkout has changes.
revision=$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- || echo -dirty)
printf 'COMMIT = "%s"\n' "$revision" > "$work/src/monitor/_build.py"

# The build host's CA bundle is lent to pip for the build only (a TLS-inspecting
# proxy on the way to PyPI) and removed with /tmp by setup-image.sh.
mmdebstrap --quiet --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="mkdir -p \"\$1/opt/mnmon\"" --customize-hook="sync-in $work/src /opt/mnmon" \
    --customize-hook='upload /etc/ssl/certs/ca-certificates.crt /tmp/build-ca.crt' \
    --customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PIP_CERT=/tmp/build-ca.crt sh /opt/mnmon/deploy/container/setup-image.sh' \
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
