#!/bin/sh
# Inside a matrix leg's guest: run "$@" with only another kernel's headers in reach, as on a
# node whose own kernel has none (bed/matrix.py, legs named RELEASE:HEADERS). The booted
# kernel's own headers are hidden under empty read-only mounts; bcc gets the other's.
set -e
headers=$1
shift
for link in build source; do
    own=/lib/modules/$(uname -r)/$link
    if [ -e "$own" ]; then
        mount -t tmpfs -o ro,size=4k none "$(readlink -f "$own")"
    fi
done
echo "guest: own headers hidden; BCC_KERNEL_SOURCE=$headers"
BCC_KERNEL_SOURCE=$headers exec "$@"
