#!/usr/bin/env bash
# Instructions per request of ix-http and ix-kv served on IX with an IX client,
# in one process over the `mem` wire (the in-process bench, `inprocess --count`),
# counted with valgrind's callgrind per thread: the server core's, the client
# core's, and the whole process's. Each protocol runs twice with N1 and N2
# requests after the same set-up; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels set-up
# (connections, the KV prefill) and shutdown. Both cores block when idle (the
# bench's --count default), so a spinning core's empty rounds are not counted.
#
#   scripts/instr-count-e2e.sh [--bench BINARY] [--n1 N1] [--n2 N2] [--only http|kv|etc] [--connections C]
#
# `kv` is 90% `get` of 32-byte values; `etc` (only with `--only etc`) is ix-kv on the ETC mix, whose seeded
# draws make the same requests in every run, so two builds' counts compare.
# BINARY defaults to the bench built from this checkout (`cargo bench -p
# ix-benches --bench inprocess --no-run`); pass another build's to compare
# commits. Needs valgrind (Debian package `valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/callgrind-setup.sh
. scripts/callgrind-setup.sh
bench='' n1=2000 n2=10000 only='' connections=32
count_options "$0" 'http|kv|etc' '--connections:connections' "$@"
need_valgrind
[ -n "$bench" ] || bench=$(bench_executable ix-benches inprocess)
[ -x "$bench" ] || { echo "instr-count-e2e: no inprocess bench binary at '$bench'" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions of one counted run, per thread: prints "server client total".
# The server core's thread is the one that ran the server's accept loop, the
# client core's the one that ran the load generator.
instructions() {
    local protocol=$1 requests=$2 dir=$out/$1-$2 server_symbol
    mkdir -p "$dir"
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$dir/callgrind.out" \
        "$bench" --count "$requests" --only "$protocol" --connections "$connections" >"$dir/log" 2>&1 ||
        { cat "$dir/log" >&2; exit 1; }
    grep -q "^counted $protocol $connections: $requests requests answered, every one a success, errors 0" "$dir/log" ||
        { echo "instr-count-e2e: unexpected run:" >&2; cat "$dir/log" >&2; exit 1; }
    case $protocol in
        http) server_symbol='ix_hyper_compat::server::Server::serve' ;;
        kv | etc) server_symbol='ix_kv::on_ix::accept_loop' ;;
    esac
    local server=0 client=0 total=0 file ir
    for file in "$dir"/callgrind.out-*; do
        ir=$(awk '/^summary:/ { print $2 }' "$file")
        total=$((total + ir))
        if grep -q "$server_symbol" "$file"; then
            server=$((server + ir))
        elif grep -q 'ix_benches::loadgen::run_with_window' "$file"; then
            client=$((client + ir))
        fi
    done
    echo "$server $client $total"
}

echo "in-process end to end: instructions counted with callgrind, (Ir(N2) - Ir(N1)) / (N2 - N1)," \
    "N1 = $n1, N2 = $n2, $connections connections"
echo "binary: $bench"
printf '%-6s %14s %14s %14s\n' "" "server core" "client core" "process"
for protocol in http kv etc; do
    if [ -z "$only" ]; then [ "$protocol" != etc ] || continue; else [ "$only" = "$protocol" ] || continue; fi
    read -r s1 c1 t1 < <(instructions "$protocol" "$n1")
    read -r s2 c2 t2 < <(instructions "$protocol" "$n2")
    awk -v p="$protocol" -v s1="$s1" -v s2="$s2" -v c1="$c1" -v c2="$c2" -v t1="$t1" -v t2="$t2" \
        -v n1="$n1" -v n2="$n2" 'BEGIN {
            d = n2 - n1
            printf "%-6s %14.1f %14.1f %14.1f   instructions per request\n", p, (s2 - s1) / d, (c2 - c1) / d, (t2 - t1) / d
        }'
done
