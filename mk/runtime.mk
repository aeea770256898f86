# Local runtime: pico-init, PID 1 of every local sandbox. It is
# bind-mounted into containers from the host, so it is linked statically
# (no sanitizers) and needs nothing from the sandbox's root filesystem.
# The driver itself (backend/runtime/local/, and backend/runtime/hostkey.c
# which both drivers use) is part of pico-backend (mk/backend.mk), which
# leaves pico-init.c (BACKEND_INIT) out of its link.

INIT_CFLAGS := -std=gnu11 -O2 -g $(WARN) -D_FORTIFY_SOURCE=2 \
               -fstack-protector-strong

BUILD_TARGETS += $(BIN)/pico-init

# the port relay parses the port with common/pico_parse.c (libc only)
$(BIN)/pico-init: $(BACKEND_INIT) backend/runtime/local/port_relay.h \
                  common/pico_parse.c common/pico_parse.h mk/runtime.mk
	@mkdir -p $(BIN)
	$(CC) $(INIT_CFLAGS) -static -I. -Ibackend -o $@.tmp $(BACKEND_INIT) \
	    common/pico_parse.c
	@mv $@.tmp $@

# -- unit tests ------------------------------------------------------------
$(BUILD)/unit/test_oci: tests/unit/test_oci.c backend/runtime/local/oci.c \
                        backend/runtime/local/oci.h mk/runtime.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) -Ibackend -o $@ $< backend/runtime/local/oci.c \
	    $(LDFLAGS) -ljansson -lcmocka

$(BUILD)/unit/test_hostkey: tests/unit/test_hostkey.c backend/runtime/hostkey.c \
                            backend/runtime/hostkey.h mk/runtime.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) -Ibackend -o $@ $< backend/runtime/hostkey.c \
	    $(LDFLAGS) -lssh -lpthread -lcmocka

.PHONY: test-unit-runtime
test-unit-runtime: $(BUILD)/unit/test_oci $(BUILD)/unit/test_hostkey
	$(BUILD)/unit/test_oci
	$(BUILD)/unit/test_hostkey

UNIT_TESTS += test-unit-runtime
