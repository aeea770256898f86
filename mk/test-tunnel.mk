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
