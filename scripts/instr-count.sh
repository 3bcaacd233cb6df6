#!/usr/bin/env bash
# Instructions per 64-byte round trip and per bulk KiB of the ix-net stack
# benchmark, counted with valgrind's callgrind: figures that do not depend on the
# host CPU or on other jobs. Each test runs twice on the bench's virtual clock
# (`stack --count rr|bulk N`), with N1 and N2 units of work after the same
# warm-up; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels set-up and warm-up.
#
#   scripts/instr-count.sh [--bench BINARY] [--n1 N1] [--n2 N2] [--only rr|bulk]
#
# BINARY defaults to the stack bench built from this checkout (`cargo bench -p
# ix-net --bench stack --no-run`); pass another build's binary to compare commits.
# Needs valgrind (Debian package `valgrind`).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/callgrind-setup.sh
. scripts/callgrind-setup.sh
bench='' n1=10000 n2=50000 only=''
count_options "$0" 'rr|bulk' '' "$@"
need_valgrind
[ -n "$bench" ] || bench=$(bench_executable ix-net stack)
[ -x "$bench" ] || { echo "instr-count: no stack bench binary at '$bench'" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions of one counted run: the `summary:` line of callgrind's output.
instructions() {
    local test=$1 units=$2 file=$out/$1-$2
    valgrind --tool=callgrind --callgrind-out-file="$file" "$bench" --count "$test" "$units" >"$file.log" 2>&1 ||
        { cat "$file.log" >&2; exit 1; }
    grep -q "^counted $test: .* retransmitted segments 0$" "$file.log" ||
        { echo "instr-count: unexpected run:" >&2; cat "$file.log" >&2; exit 1; }
    awk '/^summary:/ { print $2 }' "$file"
}

echo "ix-net stack: instructions counted with callgrind, (Ir(N2) - Ir(N1)) / (N2 - N1), N1 = $n1, N2 = $n2"
echo "binary: $bench"
for test in rr bulk; do
    [ -z "$only" ] || [ "$only" = "$test" ] || continue
    a=$(instructions "$test" "$n1")
    b=$(instructions "$test" "$n2")
    case $test in
        rr) label="instructions per 64 B round trip (both stacks, 64 conns)" ;;
        bulk) label="instructions per bulk KiB (both stacks, 1 conn)" ;;
    esac
    awk -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" -v label="$label" \
        'BEGIN { printf "%-58s %10.1f\n", label, (b - a) / (n2 - n1) }'
done
