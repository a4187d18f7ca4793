# mnmon. The README's two commands are deploy/run and tests/run, which install
# what is needed (make included) and then come here.
PY      := .venv/bin/python
PYTEST  := $(PY) -m pytest
# Stock Debian kernel the real-kernel bed boots (newest installed with headers).
KVER    ?= $(shell ls -1 /lib/modules 2>/dev/null | grep -- '-amd64$$' | sort -V | tail -n 1)
FIXTURE := build/fixture/mnmon_fixture.ko
# make test-kernel KTESTS=tests/kernel/test_serve.py PYTEST_ARGS=-x: a part of the tier
KTESTS  ?= tests/kernel

.PHONY: setup setup-test run test test-unit test-host test-kernel test-system demo bench fixture clean

setup:
	deploy/install-debian.sh

setup-test:
	deploy/install-debian.sh --test

run: setup
	.venv/bin/mnmon serve $(ARGS)

# Unit tests first (no root, no BPF), then what this host's kernel allows, then the real kernel.
test: setup-test
	$(MAKE) --no-print-directory test-unit test-host test-kernel test-system

test-unit:
	$(PYTEST) -q tests/unit

test-host:
	$(PYTEST) -q tests/host

# mnmon as users meet it: deploy/run on a fresh Debian 12 root, the systemd unit on a
# booted Debian 12, the container image (tests/system/; fresh roots cached in build/system).
test-system:
	$(PYTEST) -q -p no:cacheprovider tests/system $(PYTEST_ARGS)

fixture: $(FIXTURE)

$(FIXTURE): tests/kernel/fixture/mnmon_fixture.c tests/kernel/fixture/mnmon_fixture.h
	@mkdir -p build/fixture
	cp tests/kernel/fixture/mnmon_fixture.[ch] tests/kernel/fixture/Kbuild build/fixture/
	$(MAKE) -s -C /lib/modules/$(KVER)/build M=$(CURDIR)/build/fixture modules

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
