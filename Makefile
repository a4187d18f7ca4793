# mnmon. The README's two commands are deploy/run and tests/run, which install
# what is needed (make included) and then come here.
PY      := .venv/bin/python
PYTEST  := $(PY) -m pytest
# Stock Debian kernel the real-kernel bed boots (newest installed with headers).
# Any other pinned stock kernel (bed/kernels.py) is fetched into build/kernels/:
#   make test-kernel KVER=5.10.0-46-amd64
KVER    ?= $(shell ls -1 /lib/modules 2>/dev/null | grep -- '-amd64$$' | sort -V | tail -n 1)
# An installed kernel's headers, else a fetched one's (kernels.py builds modules for those).
KROOT   := $(if $(wildcard /lib/modules/$(KVER)/build),,$(CURDIR)/build/kernels/$(KVER)/root)
KDIR    := /lib/modules/$(KVER)/build
KCC     := $(shell sed -n 's/^CC = .*gcc-\([0-9]*\)$$/gcc-\1/p' $(KDIR)/.kernelvariables 2>/dev/null)
KCC     := $(if $(shell command -v $(KCC) 2>/dev/null),$(KCC),gcc)
FIXTURE := build/fixture/$(KVER)/mnmon_fixture.ko
# make test-kernel KTESTS=tests/kernel/test_serve.py PYTEST_ARGS=-x: a part of the tier
KTESTS  ?= tests/kernel

.PHONY: setup setup-test run deb test test-unit test-host test-kernel test-system test-matrix matrix-table demo bench bench-matrix bench-table bench-profile fixture clean

setup:
	deploy/install-debian.sh

setup-test:
	deploy/install-debian.sh --test

run: setup
	.venv/bin/mnmon serve $(ARGS)

# The Debian package (debian/), as build/deb/mnmon_<version>_all.deb. Built from a copy of
# this tree's files (tracked and new, not ignored), so that dpkg-buildpackage writes its
# output into build/deb/ and not beside the checkout. Build dependencies: debian/control.
# The distribution's python3 builds it, not another one first on PATH.
deb:
	dpkg-checkbuilddeps 2>/dev/null || apt-get build-dep -y -qq --no-install-recommends ./
	rm -rf build/deb && mkdir -p build/deb/src
	git ls-files -co --exclude-standard | while read -r f; do [ ! -e "$$f" ] || echo "$$f"; done | \
		tar -cf - -T - | tar -xf - -C build/deb/src
	# The commit built, for `mnmon --version` (monitor/build.py); "-dirty" when the checkout has changes.
	printf 'COMMIT = "%s"\n' "$$(git rev-parse --short=12 HEAD)$$(git diff --quiet HEAD -- || echo -dirty)" \
		> build/deb/src/monitor/_build.py
	cd build/deb/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -b -us -uc
	@ls build/deb/*.deb

# Unit tests first (no root, no BPF), then the real kernel: the whole tier on the installed
# one, the system tier, and the probe and OOM tests on every other pinned kernel, each in
# its own guest, one guest per core, and what this host's kernel allows beside the last
# guest (bed/lanes.py).
test: setup-test
	$(MAKE) --no-print-directory test-unit
	$(PY) -m bed.lanes --kernel $(KVER); rc=$$?; $(PY) -m bed.matrix_table; exit $$rc

test-unit:
	$(PYTEST) -q tests/unit

test-host:
	$(PYTEST) -q tests/host

# mnmon as users meet it: deploy/run on a fresh Debian 12 root, the systemd unit on a
# booted Debian 12, the container image (tests/system/; fresh roots cached in build/system).
test-system:
	$(PYTEST) -q -p no:cacheprovider tests/system $(PYTEST_ARGS)

fixture: $(FIXTURE)

$(FIXTURE): bed/fixture/mnmon_fixture.c bed/fixture/mnmon_fixture.h
	@mkdir -p $(@D)
	cp bed/fixture/mnmon_fixture.[ch] bed/fixture/Kbuild $(@D)/
	$(if $(KROOT),$(PY) -m bed.kernels build-module $(KVER) $(@D),\
		$(MAKE) -s -C $(KDIR) M=$(CURDIR)/$(@D) CC=$(KCC) modules)

# One boot runs the whole pytest session inside the guest: one vCPU, since attaching
# probes on two emulated vCPUs froze the guest now and then (bench/cpus.py); 40 minutes
# at most (the whole tier takes about 30 beside another guest), so a frozen guest fails
# the run instead of eating it.
test-kernel: fixture
	$(PY) -m bed.vm --kernel $(KVER) --cpus 1 --timeout 2400 -- \
		$(PYTEST) -q -p no:cacheprovider $(KTESTS) $(PYTEST_ARGS)

# The probe and OOM tests on every pinned stock kernel (bed/kernels.py), one boot
# each; build/matrix/<release>/ keeps each leg's log. MATRIX_ARGS=--kernels=5.10.0-46-amd64
test-matrix:
	$(PY) -m bed.matrix $(MATRIX_ARGS); rc=$$?; $(PY) -m bed.matrix_table; exit $$rc

# The README's support table, from the last matrix run.
matrix-table:
	$(PY) -m bed.matrix_table --write

demo: setup-test fixture
	$(PY) -m bed.vm --kernel $(KVER) -- $(PY) -m bed.demo

# The bench guest counts its own instructions: a QEMU TCG plugin (bench/plugin/) built
# against the plugin API header of the installed QEMU's source, one vCPU (one counter).
PLUGIN  := build/bench/plugin/libinsncount.so
INSNS   := $(CURDIR)/build/bench/insns.log
PROFILE := $(CURDIR)/build/bench/profile.log

build/bench/plugin/qemu-plugin.h:
	bench/plugin/fetch-header.sh build/bench/plugin

$(PLUGIN): bench/plugin/insncount.c build/bench/plugin/qemu-plugin.h
	gcc -O2 -Wall -Wextra -Wno-unused-parameter -Werror -shared -fPIC -Ibuild/bench/plugin -o $@ $<

bench: setup-test fixture $(PLUGIN)
	rm -f $(INSNS)
	$(PY) -m bed.vm --kernel $(KVER) --cpus 1 --plugin $(CURDIR)/$(PLUGIN),out=$(INSNS) -- \
		$(PY) -m bench --insns $(INSNS) $(BENCH_ARGS)

# The bench on every pinned stock kernel, one boot each (bed/bench_matrix.py: the default,
# every-probe and lean builds), and the README's per-kernel table from it (bed/bench_table.py).
# build/bench/<release>/ keeps each leg's results and log. BENCH_MATRIX_ARGS=--kernels=5.10.0-46-amd64
bench-matrix: setup-test $(PLUGIN)
	$(PY) -m bed.bench_matrix $(BENCH_MATRIX_ARGS); rc=$$?; $(PY) -m bed.bench_table --write; exit $$rc

# The README's per-kernel benchmark table, from the last bench matrix run.
bench-table:
	$(PY) -m bed.bench_table --write

# Where the bench's instructions go, per kernel function and BPF program (bench/profile.py).
# Its own boot: counting per block slows the emulation by a third, which make bench cannot afford.
bench-profile: setup-test fixture $(PLUGIN)
	rm -f $(INSNS) $(PROFILE)
	$(PY) -m bed.vm --kernel $(KVER) --cpus 1 --plugin $(CURDIR)/$(PLUGIN),out=$(INSNS),profile=$(PROFILE) -- \
		$(PY) -m bench.profile --insns $(INSNS) --profile $(PROFILE) $(PROFILE_ARGS)

clean:
	rm -rf build .pytest_cache
