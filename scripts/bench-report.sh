#!/bin/sh
# Assembles docs/BENCHMARKS.md from the sections the benchmarks wrote.
set -eu
dir=$1
cat <<HDR
# Benchmarks

Produced by \`make bench\` (each section names the part it ran) on
$(date -u +%Y-%m-%d) ($(nproc) cores,
$(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)). Machines here are
noisy, so each number that has a baseline is given as a ratio against that
baseline measured in the same run.

HDR
for f in "$dir"/*.md; do
    [ -e "$f" ] || continue
    cat "$f"
    echo
done
