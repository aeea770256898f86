# common/: C shared by the nginx module and the backend (libc only, no
# allocation). The module builds it through ngx_pico_module/config; here
# are its own unit tests and fuzzer. See common/pico_parse.h.

COMMON_DIR     := $(ROOT)/common
COMMON_SOURCES := $(wildcard $(COMMON_DIR)/*.c)
COMMON_DEPS    := $(COMMON_SOURCES) $(wildcard $(COMMON_DIR)/*.h)

COMMON_UNIT    := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,\
                      $(wildcard tests/unit/test_common_*.c))
COMMON_FUZZERS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,\
                      $(wildcard tests/fuzz/common_*.c))

UNIT_TESTS += test-unit-common
FUZZ_SHORT += fuzz-short-common
FUZZ_LONG  += fuzz-long-common

.PHONY: test-unit-common fuzz-short-common fuzz-long-common

$(BUILD)/unit/test_common_%: tests/unit/test_common_%.c $(COMMON_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) -I$(COMMON_DIR) -o $@ $< $(COMMON_SOURCES) \
	    -lcmocka

test-unit-common: $(COMMON_UNIT)
	@set -e; for t in $(COMMON_UNIT); do echo "== $$t"; $$t; done

$(BUILD)/fuzz/common_%: tests/fuzz/common_%.c $(COMMON_DEPS)
	@mkdir -p $(@D)
	clang -g -O1 -fno-omit-frame-pointer \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -I$(COMMON_DIR) -o $@ $< $(COMMON_SOURCES)

# the parsers take header values and request targets: 512 bytes is well
# past the longest well formed input (a token is 86)
fuzz-short-common: $(COMMON_FUZZERS)
	$(call run_fuzzers,$(COMMON_FUZZERS),20,512)

fuzz-long-common: $(COMMON_FUZZERS)
	$(call run_fuzzers,$(COMMON_FUZZERS),$${FUZZ_SECONDS:-600},512)
