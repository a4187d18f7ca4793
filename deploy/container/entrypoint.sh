#!/bin/sh
# The image's entrypoint: says in one line when the node's kernel headers are not
# there, then runs mnmon (arguments: `serve`, `doctor`...).
release=$(uname -r)
own=$(ls -d /opt/mnmon/headers/linux-headers-*-amd64 2>/dev/null | head -n 1)
own_kver=${own#*/linux-headers-}
if [ -e /lib/modules/.mnmon-image ] || [ ! -e "/lib/modules/$release/build" ]; then
    # The image's own /lib/modules is visible (the node's is not mounted), or the
    # node has no headers for its kernel.
    if [ "$own_kver" = "$release" ]; then
        echo "mnmon-image: no node headers for kernel $release under /lib/modules: using the" \
             "image's own, which are this kernel's" >&2
    elif [ -e /sys/kernel/btf/vmlinux ]; then
        # mnmon locates every struct field it reads by the kernel's BTF: any headers compile.
        echo "mnmon-image: no node headers for kernel $release under /lib/modules: compiling against" \
             "the image's linux-headers-$own_kver, struct fields located by the kernel's BTF" >&2
    else
        echo "mnmon-image: no headers for kernel $release under /lib/modules and no BTF: serving degraded" \
             "(tracepoint probes only) against the image's linux-headers-$own_kver; for every probe," \
             "install linux-headers-$release on the node and mount its /lib/modules and /usr/src read-only" >&2
    fi
    # The node's /lib/modules has no headers at all: bcc gets the image's, merged.
    if ! ls /lib/modules/*/build >/dev/null 2>&1; then
        BCC_KERNEL_SOURCE=$(python3 -c \
            'import sys; from monitor.kernel.headers import usable_headers; print(usable_headers(sys.argv[1]))' "$own")
        export BCC_KERNEL_SOURCE
    fi
fi
exec /usr/bin/mnmon "$@"
