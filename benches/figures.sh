#!/bin/sh
# The performance table (issue 11): every figure beside its reference, measured in the same run,
# and the machine it ran on. Usage: benches/figures.sh [--book]
#   --book  also time the whole book verified by the harness (`cargo test --test book`, built
#           first so the build is warm); long, so off by default. It runs before the bench, here,
#           because cargo holds the build directory while a bench runs.
# Knobs (environment): FUTURNAL_BENCH_SCALE=0.05 scales every size down for a quick look;
# FUTURNAL_BENCH_ONLY=queue,status runs only those figures (ingest, rescan, list, status,
# restart, queue, book); FUTURNAL_BENCH_BASELINE_BIN=/path/to/an/older/futurnal adds that build's
# daemon throughput rows, each measured right after ours (a before/after in the same run).
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--book" ]; then
    case ",${FUTURNAL_BENCH_ONLY:-book}," in
        *,book,*) ;;
        *) echo "--book: FUTURNAL_BENCH_ONLY leaves the book out" >&2; exit 2 ;;
    esac
    cargo test --test book --no-run
    start=$(date +%s.%N)
    status=0
    log="${CARGO_TARGET_DIR:-target}/figures-book.log"
    cargo test --test book >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    if [ "$status" -ne 0 ]; then
        echo "the book failed (exit status $status): see $log" >&2
    fi
    FUTURNAL_BENCH_BOOK="$(awk "BEGIN { print $end - $start }") $status"
    export FUTURNAL_BENCH_BOOK
elif [ $# -gt 0 ]; then
    echo "usage: benches/figures.sh [--book]" >&2
    exit 2
fi
exec cargo bench --bench figures
