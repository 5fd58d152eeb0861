#!/bin/sh
# The performance table (issue 11): every figure beside its reference, measured in the same run,
# and the machine it ran on. Usage: benches/figures.sh [--book]
#   --book  also time the whole book verified by the harness (`cargo test --test book`, built
#           first so the build is warm); long, so off by default. It runs before the bench, here,
#           because cargo holds the build directory while a bench runs.
# Knobs (environment): FUTURNAL_BENCH_SCALE=0.05 scales every size down for a quick look;
# FUTURNAL_BENCH_ONLY=queue,status runs only those figures (ingest, rescan, list, status,
# restart, queue, book).
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--book" ]; then
    cargo test --test book --no-run
    start=$(date +%s.%N)
    status=0
    cargo test --test book >/dev/null 2>&1 || status=$?
    end=$(date +%s.%N)
    FUTURNAL_BENCH_BOOK="$(awk "BEGIN { print $end - $start }") $status"
    export FUTURNAL_BENCH_BOOK
elif [ $# -gt 0 ]; then
    echo "usage: benches/figures.sh [--book]" >&2
    exit 2
fi
exec cargo bench --bench figures
