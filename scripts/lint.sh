#!/bin/sh
# make lint: formatting and static analysis of all C in pico.
#
#   clang-format  one style for all C (.clang-format)
#   cppcheck      warning, portability and performance checks
#   clang-tidy    the checks in .clang-tidy; any warning fails
#
# clang-tidy needs every file's compile flags. They are written here, on
# each run, to build/lint/compile_commands.json: the same pkg-config
# packages as mk/*.mk, and for the nginx module nginx's configured tree in
# build/ (make lint configures it first, as the module build does:
# $(MOD_OBJ)/Makefile in mk/module.mk).
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
clang-format --dry-run --Werror $files
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
    --inline-suppr --suppress=missingIncludeSystem -I backend $files

# -- clang-tidy ---------------------------------------------------------------
ngx_src=build/nginx-src/src
ngx_obj=build/nginx-obj
if [ ! -f "$ngx_obj/ngx_auto_config.h" ]; then
    echo "lint: $ngx_obj is not configured; run make lint" >&2
    exit 1
fi

# as WARN and CFLAGS in Makefile
std="-std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 \
-Wno-unused-parameter"
# mk/backend.mk (the unit tests, fuzzers and k8s driver_cli use a subset)
backend="$std $(pkg-config --cflags libmicrohttpd jansson hiredis libssh \
    libcurl libcrypto) -I. -Ibackend"
# mk/test-tunnel.mk
tt="$std -D_GNU_SOURCE $(pkg-config --cflags libssh libcurl jansson libssl \
    libcrypto) -Itest-tunnel"
# mk/module.mk: nginx's own include path (its objs/Makefile ALL_INCS)
ngx="$std"
for d in core event event/modules os/unix http http/modules http/v2; do
    ngx="$ngx -isystem $ngx_src/$d"
done
ngx="$ngx -isystem $ngx_obj $(pkg-config --cflags hiredis)"

flags_for() {
    case $1 in
    backend/runtime/local/pico-init.c | backend/runtime/local/port_relay.c)
        echo "$std -I. -Ibackend" ;; # libc only (mk/runtime.mk)
    tests/fuzz/tt_*) echo "$tt" ;; # test-tunnel's harnesses (mk/test-tunnel.mk)
    common/* | tests/unit/test_common_parse.c | tests/fuzz/common_parse.c)
        echo "$std -Icommon" ;; # shared parsers and their tests: libc only
    backend/* | tests/unit/test_backend_* | tests/unit/test_oci.c | \
        tests/unit/test_hostkey.c | tests/fuzz/* | tests/fake_k8s/*)
        echo "$backend" ;;
    test-tunnel/* | tests/unit/test_tunnel_cli.c) echo "$tt" ;;
    ngx_pico_module/ngx_*.c) echo "$ngx -Icommon" ;;
    bench/tunnel_load.c) echo "$std -pthread" ;; # libc only (mk/module.mk)
    *) return 1 ;;
    esac
}

tidy_files=$(git ls-files '*.c')
mkdir -p build/lint
db=build/lint/compile_commands.json
{
    echo "["
    sep=" "
    for f in $tidy_files; do
        fl=$(flags_for "$f") || {
            echo "lint: no compile flags for $f (add it to flags_for)" >&2
            exit 1
        }
        printf '%s{"directory": "%s", "file": "%s",\n   "command": "cc %s -c %s"}\n' \
            "$sep" "$PWD" "$f" "$fl" "$f"
        sep=","
    done
    echo "]"
} >"$db.tmp"
mv "$db.tmp" "$db"

# Two files at a time; a file's diagnostics are printed together, and
# only when it has any.
# shellcheck disable=SC2016
printf '%s\n' "$tidy_files" | xargs -P2 -n1 sh -c '
    out=$(clang-tidy -p build/lint --quiet --warnings-as-errors="*" "$1" 2>&1) \
        || { printf "%s\n" "$out" | grep -v "warnings\{0,1\} generated\.$"
             exit 1; }' clang-tidy || {
    echo "lint: clang-tidy findings above (checks: .clang-tidy)" >&2
    exit 1
}
