# mnmon. The README's two commands are deploy/run and tests/run, which install
# what is needed (make included) and then come here.
PY      := .venv/bin/python
PYTEST  := $(PY) -m pytest
# Stock Debian kernel the real-kernel bed boots (newest installed with headers).
KVER    ?= $(shell ls -1 /lib/modules 2>/dev/null | grep -- '-amd64$$' | sort -V | tail -n 1)
FIXTURE := build/fixture/mnmon_fixture.ko
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

# The bench guest counts its own instructions: a QEMU TCG plugin (bench/plugin/) built
# against the plugin API header of the installed QEMU's source, one vCPU (one counter).
PLUGIN  := build/bench/plugin/libinsncount.so
INSNS   := $(CURDIR)/build/bench/insns.log

build/bench/plugin/qemu-plugin.h:
	bench/plugin/fetch-header.sh build/bench/plugin

$(PLUGIN): bench/plugin/insncount.c build/bench/plugin/qemu-plugin.h
	gcc -O2 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC -Ibuild/bench/plugin -o $@ $<

bench: setup-test fixture $(PLUGIN)
	rm -f $(INSNS)
	$(PY) -m tests.kernel.vm --kernel $(KVER) --cpus 1 --plugin $(CURDIR)/$(PLUGIN),out=$(INSNS) -- \
		$(PY) -m bench --insns $(INSNS) $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache
