# ngx_pico_module: the dynamic module for Debian's stock nginx, built
# against nginx-dev's copy of the nginx source (never written to: it is
# copied into build/nginx-src first). See docs/nginx-module.md.

MOD_DIR      := $(ROOT)/ngx_pico_module
MOD_NGX_SRC  := /usr/share/nginx/src
MOD_SRC      := $(BUILD)/nginx-src
MOD_OBJ      := $(BUILD)/nginx-obj
MOD_SO       := $(BUILD)/modules/ngx_pico_module.so
# every file of the module's folder and of common/ (which it builds from,
# see its config): a new file cannot be missed here
MOD_SOURCES  := $(wildcard $(MOD_DIR)/*.c $(MOD_DIR)/*.h \
                           $(ROOT)/common/*.c $(ROOT)/common/*.h) \
                $(MOD_DIR)/config

MOD_LOAD     := $(BUILD)/bench/tunnel_load

BUILD_TARGETS += $(MOD_SO) $(MOD_LOAD)
# clang-tidy compiles the module against nginx's configured tree
LINT_DEPS     += $(MOD_OBJ)/Makefile

.PHONY: module bench-tunnel

module: $(MOD_SO)

# configure once per nginx-dev version (conf_flags changes with it) and
# whenever the module's config file changes.
$(MOD_OBJ)/Makefile: $(MOD_DIR)/config $(MOD_NGX_SRC)/conf_flags mk/module.mk
	rm -rf $(MOD_SRC) $(MOD_OBJ)
	mkdir -p $(BUILD)
	cp -a $(MOD_NGX_SRC) $(MOD_SRC)
	cd $(MOD_SRC) && bash -c '. ./conf_flags && ./configure \
	    --with-cc-opt="$$(dpkg-buildflags --get CFLAGS) -fPIC $$(dpkg-buildflags --get CPPFLAGS)" \
	    --with-ld-opt="$$(dpkg-buildflags --get LDFLAGS) -fPIC" \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(MOD_DIR) \
	    --builddir=$(MOD_OBJ)' > $(BUILD)/nginx-configure.log 2>&1 \
	    || { tail -30 $(BUILD)/nginx-configure.log; exit 1; }

$(MOD_SO): $(MOD_OBJ)/Makefile $(MOD_SOURCES)
	$(MAKE) -s -f $(MOD_OBJ)/Makefile -C $(MOD_SRC) modules
	mkdir -p $(dir $@)
	cp $(MOD_OBJ)/ngx_pico_module.so $@.tmp
	mv $@.tmp $@

# the load tool of bench/tunnel.py, also the echo endpoint of the e2e tests
$(MOD_LOAD): bench/tunnel_load.c
	mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -pthread -o $@ $<

# The reference proxies of the comparison (nginx's stream module, squid,
# tinyproxy) and gnuplot for the latency plot are installed here only, for
# the bench, never by deps.sh; a proxy that cannot be installed is
# reported as missing in the table.
BENCH_REF_PKGS := /usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream \
                  /usr/sbin/squid:squid /usr/bin/tinyproxy:tinyproxy \
                  /usr/bin/gnuplot:gnuplot-nox

bench-tunnel: $(MOD_SO) $(MOD_LOAD)
	@missing=""; for f in $(BENCH_REF_PKGS); do \
	    [ -e "$${f%%:*}" ] || missing="$$missing $${f#*:}"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	            --no-install-recommends $$missing >/dev/null \
	            || echo "bench-tunnel: could not install$$missing"; \
	    else echo "bench-tunnel: not root, not installing$$missing"; fi; \
	fi
	mkdir -p $(BUILD)/bench
	$(PYTHON) bench/tunnel.py --out $(BUILD)/bench/tunnel.md
