# Single-host production without Kubernetes: systemd units (deploy/systemd)
# and `make install` (scripts/install.sh). See docs/systemd.md.

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc/pico
STATEDIR   ?= /var/lib/pico
UNITDIR    ?= /etc/systemd/system
INSTALL_LISTEN ?= 0.0.0.0:8080

UNIT_TESTS += systemd-check

.PHONY: install systemd-check

install: build-all
	DESTDIR=$(DESTDIR) PREFIX=$(PREFIX) SYSCONFDIR=$(SYSCONFDIR) \
	    STATEDIR=$(STATEDIR) UNITDIR=$(UNITDIR) LISTEN=$(INSTALL_LISTEN) \
	    scripts/install.sh

# Installs into build/systemd-root and verifies the units offline.
systemd-check: $(BIN)/pico-backend $(BIN)/pico-init $(MOD_SO)
	tests/deploy/check_systemd.sh --selftest $(BUILD)/systemd-root
