#!/usr/bin/env bash
# Two builds of the ix-net stack benchmark, timed alternately in one run
# (before, after, before, after, ...), so both see the same machine.
#
#   bench-prio scripts/stack-ab.sh ROUNDS BEFORE_BINARY AFTER_BINARY
#
# Each round runs each binary's `--runs 3 --secs 1` (both tests, 0.5 s warm-up)
# and prints its table rows; compare the `per CPU-s` column of the same round.
# At the end, each round's after/before ratio of that column, and the median
# and range of the ratios. Build a commit's binary with `cargo bench -p ix-net
# --bench stack --no-run` in a worktree of that commit (docs/stack-benchmarks.md).
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 ROUNDS BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
rounds=$1
shift
for bench in "$@"; do
    [ -x "$bench" ] || { echo "stack-ab: no binary at '$bench'" >&2; exit 1; }
done
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
echo "start $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$rounds"); do
    side=before
    for bench in "$@"; do
        echo "== round $round $(basename "$bench")"
        out=$("$bench" --runs 3 --secs 1 2>/dev/null | grep -E "request/response|bulk TCP|latency")
        echo "$out"
        # The `per CPU-s` column is the fourth from the end of a test's row.
        awk -v round="$round" -v side="$side" '/request\/response/ { print round, side, "rr", $(NF - 3) }
            /bulk TCP/ { print round, side, "bulk", $(NF - 3) }' <<<"$out" >>"$rows"
        side=after
    done
done
echo "end $(date -u '+%F %T') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
# Per round: before -> after per CPU-second and their ratio; then the median
# and range of the ratios for each test.
sort -k1,1n "$rows" | awk '
    { v[$1, $2, $3] = $4; if ($1 > n) n = $1 }
    END {
        print "round  rr per CPU-s: before -> after  ratio   bulk per CPU-s: before -> after  ratio"
        for (r = 1; r <= n; r++) {
            rr[r] = v[r, "after", "rr"] / v[r, "before", "rr"]
            bk[r] = v[r, "after", "bulk"] / v[r, "before", "bulk"]
            printf "%5d  %12s -> %-12s %7.3f   %14s -> %-12s %7.3f\n", r,
                v[r, "before", "rr"], v[r, "after", "rr"], rr[r], v[r, "before", "bulk"], v[r, "after", "bulk"], bk[r]
        }
        summary("request/response", rr, n)
        summary("bulk", bk, n)
    }
    function summary(name, x, n,    i, j, t, m) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
        m = n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
        printf "%s per CPU-s, after / before: median %.3f, range %.3f .. %.3f over %d rounds\n", name, m, x[1], x[n], n
    }'
