# cloak — one command for everything CI runs: `make test`.
#
# Targets install what they need first (apt packages, npm packages, Go tools), idempotently.
# Heavy caches (the VM kernel, Go-built binaries) live outside the work tree under CACHE_DIR,
# keyed by version, so a fresh clone on the same machine reuses them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE_DIR ?= /var/cache/cloak
export CACHE_DIR
# npm scripts run on the Node 24 that the `node` devDependency installs; so does make.
export PATH := $(CURDIR)/node_modules/.bin:/usr/local/go/bin:$(PATH)
GO ?= /usr/local/go/bin/go

# Debian packages the tests and tools use. Component makefiles (mk/*.mk) add theirs.
APT_PACKAGES := cryptsetup-bin e2fsprogs xfsprogs util-linux mount kmod cpio busybox-static \
	qemu-system-x86 iproute2

NPM_STAMP := node_modules/.cloak-npm-stamp

.PHONY: help
help:
	@echo "make demo        see an encrypted volume's life, with evidence"
	@echo "make test        everything CI runs: build, lint, unit, host, VM tiers, conformance"
	@echo "make test-unit | test-host | test-vm   one tier"
	@echo "make bench       the benchmarks (long; not part of make test)"

# ---- dependencies ------------------------------------------------------------------------

.PHONY: deps deps-apt deps-npm
deps: deps-apt deps-npm

deps-apt:
	@scripts/apt-ensure.sh $(sort $(APT_PACKAGES))

deps-npm: $(NPM_STAMP)
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# ---- build and static checks -------------------------------------------------------------

.PHONY: build gen typecheck lint check
gen: deps-npm
	npm run --silent gen

build: gen
	tsc -p tsconfig.json

typecheck: gen
	tsc -p tsconfig.json --noEmit

lint: gen
	eslint .

check: typecheck lint

# ---- test tiers --------------------------------------------------------------------------

.PHONY: test test-unit test-host test-vm
test-unit: gen
	vitest run --project unit

test-host: deps build
	vitest run --project host

# One boot for the whole tier: CSI (about 10 min) and netd (about 20 min) on the emulated CPU.
test-vm: deps build vm-kernel
	test/vm/run.sh --timeout 4800 -- npm run --silent test:vm-inner

# Everything CI runs. Component makefiles add their suites to TEST_SUITES.
TEST_SUITES := test-unit test-host test-vm
test: deps build check
	@for suite in $(TEST_SUITES); do \
	  echo "==> make $$suite"; \
	  $(MAKE) --no-print-directory $$suite || exit 1; \
	done
	@echo "==> all suites passed: $(TEST_SUITES)"

-include $(sort $(wildcard mk/*.mk))

.PHONY: clean
clean:
	rm -rf dist proto/gen
