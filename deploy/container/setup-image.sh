#!/bin/sh
# Runs inside the image being built, as root, with /opt/mnmon holding mnmon's Debian
# package (mnmon.deb, from make deb) and deploy/container/: the Containerfile's RUN and
# build-oci.sh's chroot both call it, so both images are made the same way.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package as a host installs it, less the kernel headers it recommends (below).
apt-get install -y -qq --no-install-recommends /opt/mnmon/mnmon.deb kmod >/dev/null
rm /opt/mnmon/mnmon.deb

# Debian's current kernel headers, unpacked without their compiler dependencies
# (bcc brings its own clang). The node's /lib/modules, mounted over the image's,
# gives its own headers; without that mount these serve: the struct-reading probes
# for the kernel they belong to, tracepoint probes for any other.
hdr=$(apt-cache depends linux-headers-amd64 | sed -n 's/^ *Depends: \(linux-headers-.*-amd64\)$/\1/p' | head -n 1)
kver=${hdr#linux-headers-}
mkdir -p /tmp/hdr /opt/mnmon/headers "/lib/modules/$kver"
(cd /tmp/hdr && apt-get download -qq "$hdr" "${hdr%-amd64}-common" 2>/dev/null)
for deb in /tmp/hdr/*.deb; do dpkg -x "$deb" /tmp/hdr/root; done
mv /tmp/hdr/root/usr/src/* /opt/mnmon/headers/
ln -s "/opt/mnmon/headers/linux-headers-$kver" "/lib/modules/$kver/build"
ln -s "/opt/mnmon/headers/linux-headers-${kver%-amd64}-common" "/lib/modules/$kver/source"
# Marks the image's own /lib/modules: visible only when the node's is not mounted.
touch /lib/modules/.mnmon-image

mnmon --version >/dev/null
rm -rf /tmp/hdr /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
