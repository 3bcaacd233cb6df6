#!/usr/bin/env bash
# Two builds of the ix-net stack benchmark, timed alternately in one run
# (before, after, before, after, ...), so both see the same machine.
#
#   bench-prio scripts/stack-ab.sh ROUNDS BEFORE_BINARY AFTER_BINARY
#
# Each round runs each binary's `--runs 3 --secs 1` (both tests, 0.5 s warm-up)
# and prints its table rows; compare the `per CPU-s` column of the same round.
# Build a commit's binary with `cargo bench -p ix-net --bench stack --no-run`
# in a worktree of that commit (docs/stack-benchmarks.md).
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 ROUNDS BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
rounds=$1
shift
for bench in "$@"; do
    [ -x "$bench" ] || { echo "stack-ab: no binary at '$bench'" >&2; exit 1; }
done
for round in $(seq 1 "$rounds"); do
    for bench in "$@"; do
        echo "== round $round $(basename "$bench")"
        "$bench" --runs 3 --secs 1 2>/dev/null | grep -E "request/response|bulk TCP|latency"
    done
done
