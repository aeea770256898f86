#!/bin/sh
# make lint: formatting and static analysis of all C in pico.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
clang-format --dry-run --Werror $files
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
    --inline-suppr --suppress=missingIncludeSystem -I backend $files
