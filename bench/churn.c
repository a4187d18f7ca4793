// SPDX-License-Identifier: GPL-2.0
/*
 * churn: a tight loop of invalidations for mnmon's benchmarks.
 *
 *   churn [-w] [-p PAGES] kvm|list|interval ITERATIONS
 *
 * PAGES (default 1) private anonymous pages, subscribed to one notifier: KVM guest
 * memory (a VM whose only memslot is the pages: KVM's list notifier), or the test
 * fixture's list or interval notifier that never fails. Each iteration touches every
 * page and drops them all with one madvise(MADV_DONTNEED): one blockable
 * invalidate_range_start/_end over the whole range.
 *
 * Prints one line: "ns_per_iter=F iterations=N slot=S utime_ns=U stime_ns=K"
 * (slot: the fixture's slot id, -1 for kvm; times from getrusage).
 * The loop runs between two marker instructions (NOPs on any x86-64 CPU): under
 * QEMU with bench/plugin/insncount.c, the guest instructions it took are counted.
 * -w: print "ready pid=P slot=S" once subscribed and wait for a line on stdin
 * before the loop (so a monitor can attach to the new notifier first), and after
 * the result wait for EOF on stdin before exiting (exiting unmaps, which
 * invalidates too, so counts are read while it waits).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mnmon_fixture.h"

/*
 * From <linux/kvm.h>, which cannot be included beside mnmon_fixture.h (their
 * user-space __u64 typedefs differ: unsigned long long vs uint64_t).
 */
struct kvm_userspace_memory_region {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
};
#define KVMIO 0xAE
#define KVM_CREATE_VM _IO(KVMIO, 0x01)
#define KVM_SET_USER_MEMORY_REGION _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)

/* nopl 0x4d4e0001(%rax) / nopl 0x4d4e0002(%rax): what bench/plugin/insncount.c looks for */
#define MARK_START() asm volatile(".byte 0x0f, 0x1f, 0x80, 0x01, 0x00, 0x4e, 0x4d" ::: "memory")
#define MARK_STOP() asm volatile(".byte 0x0f, 0x1f, 0x80, 0x02, 0x00, 0x4e, 0x4d" ::: "memory")

static void die(const char *what)
{
	fprintf(stderr, "churn: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long long ns_of(struct timeval tv)
{
	return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

/* Subscribe the page to the notifier of mode; returns the fixture slot, -1 for kvm. */
static int subscribe(const char *mode, char *page, long size)
{
	struct mnmon_fx_subscribe req = { .behaviour = MNMON_FX_NEVER_FAIL };
	int fd, vm, slot;

	if (!strcmp(mode, "kvm")) {
		struct kvm_userspace_memory_region region = {
			.memory_size = size, .userspace_addr = (unsigned long)page,
		};

		fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die("/dev/kvm");
		vm = ioctl(fd, KVM_CREATE_VM, 0);
		if (vm < 0)
			die("KVM_CREATE_VM");
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			die("KVM_SET_USER_MEMORY_REGION");
		return -1;
	}
	fd = open("/dev/" MNMON_FIXTURE_DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("/dev/" MNMON_FIXTURE_DEV);
	if (!strcmp(mode, "list")) {
		slot = ioctl(fd, MNMON_FX_ADD_LIST, &req);
	} else {
		req.start = (unsigned long)page;
		req.length = size;
		slot = ioctl(fd, MNMON_FX_ADD_INTERVAL, &req);
	}
	if (slot < 0)
		die("fixture subscribe");
	return slot;
}

int main(int argc, char **argv)
{
	long psize = sysconf(_SC_PAGESIZE), size, pages = 1, i, j, n;
	struct timespec t0, t1;
	struct rusage r0, r1;
	int wait = 0, slot, opt;
	const char *mode;
	char line[64];
	char *page;
	double ns;

	while ((opt = getopt(argc, argv, "wp:")) != -1) {
		if (opt == 'w')
			wait = 1;
		else if (opt != 'p' || (pages = atol(optarg)) <= 0)
			goto usage;
	}
	if (argc - optind != 2 || (n = atol(argv[optind + 1])) <= 0)
		goto usage;
	mode = argv[optind];
	if (strcmp(mode, "kvm") && strcmp(mode, "list") && strcmp(mode, "interval"))
		goto usage;
	size = pages * psize;
	/* MAP_PRIVATE: shared anonymous memory is shmem, zapped differently. */
	page = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		die("mmap");
	slot = subscribe(mode, page, size);
	if (wait) {
		printf("ready pid=%d slot=%d\n", getpid(), slot);
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	getrusage(RUSAGE_SELF, &r0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	MARK_START();
	for (i = 0; i < n; i++) {
		for (j = 0; j < size; j += psize)
			*(volatile char *)(page + j) = 1;
		if (madvise(page, size, MADV_DONTNEED))
			die("madvise");
	}
	MARK_STOP();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	getrusage(RUSAGE_SELF, &r1);
	ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n;
	printf("ns_per_iter=%.1f iterations=%ld slot=%d utime_ns=%lld stime_ns=%lld\n", ns, n, slot,
	       ns_of(r1.ru_utime) - ns_of(r0.ru_utime), ns_of(r1.ru_stime) - ns_of(r0.ru_stime));
	fflush(stdout);
	if (wait)
		while (fgets(line, sizeof(line), stdin))
			;
	return 0;
usage:
	fprintf(stderr, "usage: churn [-w] [-p PAGES] kvm|list|interval ITERATIONS\n");
	return 2;
}
