"""The real-kernel test bed: stock kernels fetched and booted under QEMU, the fixture driver and its workloads, the kernel matrix."""
