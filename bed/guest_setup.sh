#!/bin/sh
# Runs first inside the guest: what the scenarios need from the kernel.
set -e
fixture=build/fixture/$(uname -r)/mnmon_fixture.ko
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
mountpoint -q /sys/kernel/tracing || mount -t tracefs none /sys/kernel/tracing
# Memory cgroups for the OOM scenarios.
grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
    echo +memory > /sys/fs/cgroup/cgroup.subtree_control
# The emulated CPU has SVM (-cpu max): a real in-tree notifier through /dev/kvm.
modprobe kvm_amd 2>/dev/null || echo "guest_setup: kvm_amd did not load; KVM scenarios will fail" >&2
if [ -e "$fixture" ] && ! grep -q '^mnmon_fixture ' /proc/modules; then
    insmod "$fixture"
fi
# The OOM scenarios print many reaper lines; keep them out of the console.
dmesg -n 1
echo "guest: $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
