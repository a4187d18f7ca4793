# mnmon. The README's two commands are deploy/run and tests/run, which install
# what is needed (make included) and then come here.
PY      := .venv/bin/python
PYTEST  := $(PY) -m pytest
# Stock Debian kernel the real-kernel bed boots (newest installed with headers).
# Any other pinned stock kernel (tests/kernel/kernels.py) is fetched into build/kernels/:
#   make test-kernel KVER=5.10.0-46-amd64
KVER    ?= $(shell ls -1 /lib/modules 2>/dev/null | grep -- '-amd64$$' | sort -V | tail -n 1)
# A fetched kernel's tree, else the installed one.
KROOT   := $(if $(wildcard /lib/modules/$(KVER)/build),,$(CURDIR)/build/kernels/$(KVER)/root)
KDIR    := $(KROOT)/lib/modules/$(KVER)/build
# Debian builds each kernel with its own gcc (5.10: gcc-10); a host without it uses its own.
KCC     := $(shell sed -n 's/^CC = .*gcc-\([0-9]*\)$$/gcc-\1/p' $(KDIR)/.kernelvariables 2>/dev/null)
KCC     := $(if $(shell command -v $(KCC) 2>/dev/null),$(KCC),gcc)
FIXTURE := build/fixture/$(KVER)/mnmon_fixture.ko
# make test-kernel KTESTS=tests/kernel/test_serve.py PYTEST_ARGS=-x: a part of the tier
KTESTS  ?= tests/kernel

.PHONY: setup setup-test run test test-unit test-host test-kernel demo bench fixture clean

setup:
	deploy/install-debian.sh

setup-test:
	deploy/install-debian.sh --test

run: setup
	.venv/bin/mnmon serve $(ARGS)

# Unit tests first (no root, no BPF), then what this host's kernel allows, then the real kernel.
test: setup-test
	$(MAKE) --no-print-directory test-unit test-host test-kernel

test-unit:
	$(PYTEST) -q tests/unit

test-host:
	$(PYTEST) -q tests/host

fixture: $(FIXTURE)

$(FIXTURE): tests/kernel/fixture/mnmon_fixture.c tests/kernel/fixture/mnmon_fixture.h
	@[ -e $(KDIR) ] || $(PY) -m tests.kernel.kernels fetch $(KVER) >/dev/null
	@mkdir -p $(@D)
	cp tests/kernel/fixture/mnmon_fixture.[ch] tests/kernel/fixture/Kbuild $(@D)/
	$(MAKE) -s -C $(KDIR) M=$(CURDIR)/$(@D) CC=$(KCC) modules

# One boot runs the whole pytest session inside the guest: one vCPU, since attaching
# probes on two emulated vCPUs froze the guest now and then (bench/cpus.py); 30 minutes
# at most (the tier takes about 8), so a frozen guest fails the run instead of eating it.
test-kernel: fixture
	$(PY) -m tests.kernel.vm --kernel $(KVER) --cpus 1 --timeout 1800 -- \
		$(PYTEST) -q -p no:cacheprovider $(KTESTS) $(PYTEST_ARGS)

demo: setup-test fixture
	$(PY) -m tests.kernel.vm --kernel $(KVER) -- $(PY) -m tests.kernel.demo

bench: setup-test fixture
	$(PY) -m tests.kernel.vm --kernel $(KVER) -- $(PY) -m bench

clean:
	rm -rf build .pytest_cache
