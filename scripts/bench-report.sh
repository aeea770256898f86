#!/bin/sh
# Assembles docs/BENCHMARKS.md from the sections the benchmarks wrote:
# the known ones in this order (SSH after the raw tunnel numbers it builds
# on), then any other section in name order.
set -eu
dir=$1
order="create tunnel ssh"
cat <<HDR
# Benchmarks

Produced by \`make bench\` (each section names the part it ran) on
$(date -u +%Y-%m-%d) ($(nproc) cores,
$(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)). Machines here are
noisy, so each number that has a baseline is given as a ratio against that
baseline measured in the same run.

HDR
section() {
    cat "$1"
    echo
}
for name in $order; do
    if [ -e "$dir/$name.md" ]; then section "$dir/$name.md"; fi
done
for f in "$dir"/*.md; do
    [ -e "$f" ] || continue
    case " $order " in *" $(basename "$f" .md) "*) continue ;; esac
    section "$f"
done
