# test-tunnel: the C command-line client (libssh, libcurl, jansson, OpenSSL).
#
#   make build-test-tunnel              bin/test-tunnel
#   make test-tunnel SESSION_ID=<id>    run it (builds it when missing)
#   make test-tunnel-build SESSION_ID=<id>  rebuild, then run
#
# build/san/test-tunnel is the ASan/UBSan build the e2e tests prefer.

TT_SRC  := $(wildcard test-tunnel/*.c)
TT_HDR  := $(wildcard test-tunnel/*.h)
TT_OBJ  := $(patsubst test-tunnel/%.c,$(BUILD)/test-tunnel/%.o,$(TT_SRC))
TT_SOBJ := $(patsubst test-tunnel/%.c,$(BUILD)/san/test-tunnel.o/%.o,$(TT_SRC))
TT_PKGS := libssh libcurl jansson libssl libcrypto
TT_CFLAGS = -D_GNU_SOURCE $(shell pkg-config --cflags $(TT_PKGS))
TT_LIBS   = $(shell pkg-config --libs $(TT_PKGS)) -lpthread
API     ?= http://localhost:8080
TT_ARGS  = -session $(SESSION_ID) -api $(API)

BUILD_TARGETS += $(BIN)/test-tunnel $(BUILD)/san/test-tunnel

.PHONY: build-test-tunnel test-tunnel test-tunnel-build test-tunnel-need-id

build-test-tunnel: $(BIN)/test-tunnel

$(BIN)/test-tunnel: $(TT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(TT_LIBS)

$(BUILD)/test-tunnel/%.o: test-tunnel/%.c $(TT_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TT_CFLAGS) -c -o $@ $<

$(BUILD)/san/test-tunnel: $(TT_SOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) -o $@ $^ $(TT_LIBS)

$(BUILD)/san/test-tunnel.o/%.o: test-tunnel/%.c $(TT_HDR)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(WARN) $(SANFLAGS) $(TT_CFLAGS) -c -o $@ $<

test-tunnel-need-id:
	@if [ -z "$(SESSION_ID)" ]; then \
	    echo "usage: make test-tunnel SESSION_ID=<session-id> [API=$(API)]" >&2; \
	    exit 2; fi

test-tunnel: test-tunnel-need-id $(BIN)/test-tunnel
	$(BIN)/test-tunnel $(TT_ARGS)

test-tunnel-build: test-tunnel-need-id build-test-tunnel
	$(BIN)/test-tunnel $(TT_ARGS)

# -- unit tests (cmocka): flags and the CONNECT exchange, ASan and valgrind
TT_UNIT_SRC := test-tunnel/flags.c test-tunnel/connect.c test-tunnel/conn.c

$(BUILD)/unit/test_tunnel_cli: tests/unit/test_tunnel_cli.c $(TT_UNIT_SRC) \
                               $(TT_HDR) mk/test-tunnel.mk
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) $(SANFLAGS) $(TT_CFLAGS) -Itest-tunnel -o $@ \
	    $< $(TT_UNIT_SRC) $(TT_LIBS) -lcmocka -lpthread

$(BUILD)/unit-vg/test_tunnel_cli: tests/unit/test_tunnel_cli.c $(TT_UNIT_SRC) \
                                  $(TT_HDR) mk/test-tunnel.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TT_CFLAGS) -Itest-tunnel -o $@ $< $(TT_UNIT_SRC) \
	    $(LDFLAGS) $(TT_LIBS) -lcmocka -lpthread

.PHONY: test-unit-test-tunnel
test-unit-test-tunnel: $(BUILD)/unit/test_tunnel_cli \
                       $(BUILD)/unit-vg/test_tunnel_cli
	$(BUILD)/unit/test_tunnel_cli
	valgrind -q --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite $(BUILD)/unit-vg/test_tunnel_cli

UNIT_TESTS += test-unit-test-tunnel

# -- fuzzing (clang libFuzzer): the -api URL, the server's CONNECT answer,
# the command line and the session answer's host key (tests/fuzz/tt_*.c).
# Seeds are in tests/fuzz/corpus/<name>; what the fuzzer adds stays in
# build/fuzz/corpus-<name>, a crash input in build/fuzz/<name>-crash-*.
TT_FUZZERS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,\
                 $(wildcard tests/fuzz/tt_*.c))
TT_FUZZ_SRC := test-tunnel/flags.c test-tunnel/connect.c test-tunnel/conn.c \
               test-tunnel/rest.c
# the answers and URLs are small: 16 KiB header + 4 KiB body at most
TT_FUZZ_LEN := 24576

$(BUILD)/fuzz/tt_%: tests/fuzz/tt_%.c $(TT_FUZZ_SRC) $(TT_HDR) \
                    mk/test-tunnel.mk
	@mkdir -p $(@D)
	clang -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -std=gnu11 $(WARN) $(TT_CFLAGS) \
	    -Itest-tunnel -o $@ $< $(TT_FUZZ_SRC) $(TT_LIBS)


.PHONY: fuzz-short-test-tunnel fuzz-long-test-tunnel
fuzz-short-test-tunnel: $(TT_FUZZERS)
	$(call run_fuzzers,$(TT_FUZZERS),5,$(TT_FUZZ_LEN))

fuzz-long-test-tunnel: $(TT_FUZZERS)
	$(call run_fuzzers,$(TT_FUZZERS),$${FUZZ_SECONDS:-600},$(TT_FUZZ_LEN))

FUZZ_SHORT += fuzz-short-test-tunnel
FUZZ_LONG  += fuzz-long-test-tunnel
