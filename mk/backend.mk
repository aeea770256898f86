# pico-backend: the REST API, Redis store, reaper and runtime drivers.
#
#   bin/pico-backend           -O2 build (every .c under backend/, drivers
#                              too, but pico-init)
#   build/san/pico-backend     the same with ASan+UBSan (e2e prefers it)
#   unit tests (cmocka), one also under valgrind; libFuzzer harnesses

BACKEND_PKGS := libmicrohttpd jansson hiredis libssh libcurl libcrypto
# -I. for common/ (the parsers shared with the module), -Ibackend for the
# backend's own folders: includes always name their folder.
BACKEND_CFLAGS := $(shell pkg-config --cflags $(BACKEND_PKGS)) -I.
BACKEND_LIBS := $(shell pkg-config --libs $(BACKEND_PKGS)) -lpthread
# Sources come from the folders (backend/ and its layers api/, core/,
# store/, runtime/ and the drivers below runtime/): a new file is built
# without being listed. pico-init is not part of the backend: it is PID 1
# of a local sandbox, linked statically on its own (mk/runtime.mk).
BACKEND_INIT := backend/runtime/local/pico-init.c \
                backend/runtime/local/port_relay.c
BACKEND_SRCS := $(sort $(filter-out $(BACKEND_INIT),\
                  $(wildcard backend/*.c backend/*/*.c backend/*/*/*.c)) \
                  $(wildcard common/*.c))
BACKEND_HDRS := $(wildcard backend/*.h backend/*/*.h backend/*/*/*.h \
                  common/*.h)
# The parts unit tests and fuzzers link: the core, the API, the store and
# subprocess.c (what the local driver runs runc and mkfs.ext4 with); no
# main.c, no drivers.
BACKEND_CORE := $(sort $(wildcard backend/core/*.c backend/api/*.c \
                  backend/store/*.c common/*.c) \
                  backend/runtime/local/subprocess.c)

BUILD_TARGETS += $(BIN)/pico-backend $(BUILD)/san/pico-backend

$(BIN)/pico-backend: $(BACKEND_SRCS) $(BACKEND_HDRS) mk/backend.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -O2 $(BACKEND_CFLAGS) -Ibackend -o $@ $(BACKEND_SRCS) \
	    $(LDFLAGS) $(BACKEND_LIBS)

$(BUILD)/san/pico-backend: $(BACKEND_SRCS) $(BACKEND_HDRS) mk/backend.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) $(BACKEND_CFLAGS) -Ibackend -o $@ \
	    $(BACKEND_SRCS) $(LDFLAGS) $(BACKEND_LIBS)

# -- unit tests ------------------------------------------------------------
BACKEND_UNIT := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,\
                  $(wildcard tests/unit/test_backend_*.c))

$(BUILD)/unit/test_backend_%: tests/unit/test_backend_%.c $(BACKEND_CORE) \
                              $(BACKEND_HDRS) mk/backend.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) $(BACKEND_CFLAGS) -Ibackend -o $@ $< \
	    $(BACKEND_CORE) $(LDFLAGS) $(BACKEND_LIBS) -lcmocka

# A plain (no sanitizer) build for valgrind, which does not mix with ASan.
$(BUILD)/unit-vg/test_backend_session: tests/unit/test_backend_session.c \
                                       $(BACKEND_CORE) $(BACKEND_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(BACKEND_CFLAGS) -Ibackend -o $@ $< $(BACKEND_CORE) \
	    $(LDFLAGS) $(BACKEND_LIBS) -lcmocka

.PHONY: test-unit-backend test-unit-backend-valgrind
test-unit-backend: $(BACKEND_UNIT)
	@set -e; for t in $(BACKEND_UNIT); do echo "== $$t"; $$t; done

test-unit-backend-valgrind: $(BUILD)/unit-vg/test_backend_session
	valgrind --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite $<

UNIT_TESTS += test-unit-backend test-unit-backend-valgrind

# -- fuzzing (clang libFuzzer) ---------------------------------------------
BACKEND_FUZZERS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,\
                     $(wildcard tests/fuzz/backend_*.c))
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined

$(BUILD)/fuzz/backend_%: tests/fuzz/backend_%.c $(BACKEND_CORE) \
                         $(BACKEND_HDRS) mk/backend.mk
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -std=gnu11 $(BACKEND_CFLAGS) -Ibackend -o $@ $< \
	    $(BACKEND_CORE) $(BACKEND_LIBS)

.PHONY: fuzz-short-backend fuzz-long-backend
fuzz-short-backend: $(BACKEND_FUZZERS)
	$(call run_fuzzers,$(BACKEND_FUZZERS),10,8192)

fuzz-long-backend: $(BACKEND_FUZZERS)
	$(call run_fuzzers,$(BACKEND_FUZZERS),$${FUZZ_SECONDS:-600},8192)

FUZZ_SHORT += fuzz-short-backend
FUZZ_LONG += fuzz-long-backend

# -- benchmark ---------------------------------------------------------------
.PHONY: bench-create
bench-create: build-all rootfs
	@mkdir -p $(BUILD)/bench
	$(PYTHON) bench/create.py $(if $(ISOLATION),--isolation $(ISOLATION)) \
	    > $(BUILD)/bench/create.md
	@cat $(BUILD)/bench/create.md
