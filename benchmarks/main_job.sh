#!/usr/bin/env bash
# The README's main job, measured the way the README reports it: an empty AIGI_BENCH_HOME (so
# the world build and every first-use step count), wall time and peak RSS from GNU time.
#
#   benchmarks/main_job.sh [extra `bench run` options]
#
# Needs /usr/bin/time (Debian package `time`). Prints the table, then the two measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
work=$(mktemp -d)
AIGI_BENCH_HOME="$work/home" /usr/bin/time -v -o "$work/time.txt" bench run --suite mini --post-process --out "$work/results" "$@"
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$work/time.txt"
echo "run folder: $work/results/mini"
