# pico - top-level Makefile.
#
# Each part has its own fragment in mk/ (backend.mk, module.mk,
# test-tunnel.mk, sdk.mk, k8s.mk, bench.mk). A fragment adds its build
# targets to BUILD_TARGETS, its unit tests to UNIT_TESTS, its short fuzz runs
# to FUZZ_SHORT and what clang-tidy needs generated first to LINT_DEPS; this
# file ties them into the commands users type.
#
#   make run     install what is missing, build, start the service on :8080
#   make test    everything above, then unit, fuzz and end-to-end tests
#   make bench   benchmarks into docs/BENCHMARKS.md

ROOT      := $(CURDIR)
BUILD     := $(ROOT)/build
BIN       := $(ROOT)/bin
VAR       ?= $(ROOT)/var
IMAGES    ?= $(VAR)/images
PORT      ?= 8080
LISTEN    ?= 127.0.0.1:$(PORT)
PYTHON    := /usr/bin/python3
PYTEST    := $(PYTHON) -m pytest

CC        ?= cc
WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 \
             -Wno-unused-parameter
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 $(WARN) -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
             -fPIE
LDFLAGS   += -pie -Wl,-z,relro,-z,now
SANFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined

BUILD_TARGETS :=
UNIT_TESTS    :=
FUZZ_SHORT    :=
FUZZ_LONG     :=
LINT_DEPS     :=

# $(call run_fuzzers,FUZZERS,SECONDS,MAX_LEN), for the mk/*.mk fuzz
# targets: each libFuzzer binary for SECONDS on its seeds
# (tests/fuzz/corpus/<name>) and on what earlier runs kept
# (build/fuzz/corpus-<name>); its log goes to build/fuzz/<name>.log and a
# crashing input to build/fuzz/<name>-crash-*.
define run_fuzzers
	@set -e; for f in $(1); do n=$$(basename $$f); \
	    mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	    $$f -max_total_time=$(2) -max_len=$(3) -print_final_stats=1 \
	        -artifact_prefix=$(BUILD)/fuzz/$$n- $(BUILD)/fuzz/corpus-$$n \
	        tests/fuzz/corpus/$$n > $(BUILD)/fuzz/$$n.log 2>&1 \
	        || { tail -40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	    echo "$$n: $$(grep -E '^stat::number_of_executed_units' \
	        $(BUILD)/fuzz/$$n.log | tr -dc 0-9) runs in $(2) s, no findings"; \
	done
endef

.PHONY: all build-all deps rootfs run test test-unit test-e2e fuzz fuzz-short \
        bench lint format clean

all: build-all

include $(sort $(wildcard mk/*.mk))

build-all: $(BUILD_TARGETS)

# Installs the Debian packages pico needs that are not there yet.
deps:
	@scripts/deps.sh

# The sandbox root filesystem, built once per machine by mmdebstrap.
rootfs: deps
	@scripts/build-rootfs.sh $(IMAGES) sandbox latest

run: deps build-all rootfs
	@exec env VAR=$(VAR) IMAGES=$(IMAGES) LISTEN=$(LISTEN) scripts/run.sh

test: deps lint build-all rootfs test-unit fuzz-short test-e2e

test-unit: $(UNIT_TESTS)

fuzz-short: $(FUZZ_SHORT)

fuzz: $(FUZZ_LONG)

test-e2e: build-all rootfs
	$(PYTEST) -p no:cacheprovider -q tests/e2e $(PYTEST_ARGS)

# clang-format, cppcheck and clang-tidy on all C (scripts/lint.sh)
lint: $(LINT_DEPS)
	@scripts/lint.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BIN)
