#!/bin/sh
# fetch-header.sh DIR: put qemu-plugin.h of the installed QEMU's exact source version in DIR.
#
# Debian ships QEMU with TCG plugin support but not the plugin API header; it is in the
# upstream tarball of QEMU's source package. A private apt state (its own sources list,
# lists and cache under DIR) finds that tarball and its checksum for the installed
# version without touching the host's apt configuration.
set -eu
dir=$(mkdir -p "$1" && cd "$1" && pwd)
version=$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null) ||
    { echo "fetch-header: qemu-system-x86 is not installed" >&2; exit 1; }
apt=$dir/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d"
# The suites Debian serves bookworm's QEMU from; -security carries the newest updates.
cat > "$apt/sources.list" <<SOURCES
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
SOURCES
cat > "$apt/apt.conf" <<CONF
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.list.d";
Dir::State::Lists "$apt/lists";
Dir::Cache "$apt/cache";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$apt/apt.conf"
apt-get -qq update
# apt checks the files against the signed Sources index as it downloads them.
(cd "$apt" && apt-get source -qq --download-only "qemu=$version" >/dev/null)
tar -xJf "$apt"/qemu_*.orig.tar.* -C "$apt" --wildcards '*/include/qemu/qemu-plugin.h'
cp "$apt"/qemu-*/include/qemu/qemu-plugin.h "$dir/qemu-plugin.h"
rm -f "$apt"/qemu_*
echo "fetch-header: qemu-plugin.h of qemu $version"
