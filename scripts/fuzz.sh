#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (nightly Rust, cargo-fuzz; installed when missing), one after the
# other, one job each, at the lowest CPU priority, then minimises each corpus back into fuzz/corpus/TARGET
# (kept in git; the CI replays it on stable with `cargo test -p ix-fuzz`). Every run's exec count and the CPU
# seconds it got are appended to fuzz/runs.tsv. A crash stops that target; its input is left in
# fuzz/artifacts/TARGET/ and the script exits non-zero at the end: copy the input to
# fuzz/regressions/TARGET/ with the fix (see docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        SECONDS per target (default 60), every target by default
#   scripts/fuzz.sh --runs N [TARGET...]         N executions per target instead of a time budget
#   scripts/fuzz.sh --runs N SECONDS [TARGET...] whichever comes first
#   scripts/fuzz.sh --to-total N [SECONDS] ...   each target until fuzz/runs.tsv's total for it reaches N
#   scripts/fuzz.sh --sanitizer none ...         without AddressSanitizer (default: address)
#   scripts/fuzz.sh --no-trace-compares ...      without libFuzzer's comparison tracing (faster, less guided;
#                                                docs/fuzzing.md round 11: tcp_session gained from it in 25 s runs)
#   scripts/fuzz.sh --jobs N ...                 N fuzzers per target side by side (one per CPU), each into a
#                                                directory of its own, merged into the corpus once all are done
#   scripts/fuzz.sh --list                       the targets
#
# Without the sanitizer the harnesses' own invariants (panics) and libFuzzer's coverage guidance stay; only
# memory errors in unsafe code go unseen: meant for the slow stateful targets (docs/fuzzing.md).
# Each sanitizer builds into a target directory of its own, so switching does not rebuild the other.
# Runs of different targets may go side by side (one script per target, one per CPU, e.g. under `bg-run`, or
# `chrt -i 0` where a machine has no `bg-run`: both run it at SCHED_IDLE):
# each target has its own directories, and a run's line is appended to runs.tsv in one write. Two scripts must
# not run the same target at once (they would share its directories): `--jobs N` runs one target N times over,
# each job writing its new inputs to work/TARGET.jK (K = 1..N) and its log to work/TARGET.jK.log, all reading
# corpus/TARGET, which only the merge after the last job rewrites. Each job's run has its line in runs.tsv.
# With --to-total each job runs its share of what is left; --runs N is N executions per job.
# libFuzzer's timeout is wall-clock time: a campaign frozen by `bench-prio` or starved at SCHED_IDLE for longer
# than it looks like a hang. A timeout is therefore replayed alone under a limit of CPU time (RLIMIT_CPU); a unit
# that passes there is no finding: it is moved to fuzz/work/TARGET.replayed-timeouts/, the run is recorded as
# `timeout-replayed-ok`, and the target goes on with what is left of its budget. A unit that fails again is a
# crash like any other.
# A campaign stopped with SIGINT (to the libFuzzer binary) is recorded as `stopped`, with the executions it
# made, and its corpus is minimised as after a full run.
# libFuzzer's -reload=0: a lone job need not list and stat its output directory every second (measured: a
# few percent of kv_text's CPU once the directory held thousands of new inputs); the directory is emptied
# once its inputs are merged into the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

targets_all() { sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^ix-fuzz-targets$'; }

runs_limit= seconds_limit= to_total= notc= jobs=1
sanitizer=address
while [ $# -gt 0 ]; do
    case $1 in
        --list) targets_all; exit 0 ;;
        --runs) runs_limit=${2:?--runs needs a count}; shift 2 ;;
        --to-total) to_total=${2:?--to-total needs a count}; shift 2 ;;
        --sanitizer) sanitizer=${2:?--sanitizer needs a name: address, none, ...}; shift 2 ;;
        --no-trace-compares) notc=1; shift ;;
        --jobs) jobs=${2:?--jobs needs a count}; shift 2 ;;
        '' | -* | *[!0-9]*) break ;;
        *) seconds_limit=$1; shift ;;
    esac
done
[ -n "$runs_limit" ] || [ -n "$to_total" ] || [ -n "$seconds_limit" ] || seconds_limit=60
case $jobs in '' | 0* | *[!0-9]*) echo "--jobs needs a positive count, not '$jobs'" >&2; exit 2 ;; esac
build=(-O -s "$sanitizer")
# What runs.tsv's last column records: the sanitizer, and whether comparisons were traced.
build_name=$sanitizer
if [ -n "$notc" ]; then
    build+=(--no-trace-compares)
    build_name+=+no-trace-compares
fi
[ "$sanitizer" = address ] && [ -z "$notc" ] || build+=(--target-dir "target/sanitizer-$sanitizer${notc:+-notc}")
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(targets_all)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz

# Longest input per target: frames for the parsers, a few hundred operations or reads for the others.
max_len() {
    case "$1" in
        tcp_session | kv_text | http_server) echo 8192 ;;
        ixcp_message) echo 4096 ;; # a listing of a few dataplanes, each with its cores
        *) echo 1600 ;;
    esac
}

commit=$(git rev-parse --short HEAD)
[ -f fuzz/runs.tsv ] || printf 'date\tcommit\ttarget\texecs\tseconds\tresult\tcpu_seconds\tsanitizer\n' > fuzz/runs.tsv
failed=()
cd fuzz
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} nice -n 19 cargo +nightly fuzz build "${build[@]}"
# Executions of TARGET over every run so far.
total_of() { awk -F'\t' -v t="$1" 'NR > 1 && $3 == t && $4 ~ /^[0-9]+$/ { n += $4 } END { printf "%d", n }' runs.tsv; }
# libFuzzer's per-unit timeout, wall-clock seconds: its own default. 20 s, used before, fired on frozen
# campaigns, and once (2026-12-06) libFuzzer deadlocked in its timeout handler instead of exiting.
unit_timeout=1200
# Whether LOG ends in a libFuzzer timeout whose unit passes when replayed alone under a CPU-time limit (then
# the unit is moved out of artifacts/: the fuzzer was frozen or starved, not hung).
replayed_timeout_passes() {
    local log=$1 target=$2 unit
    grep -q 'ERROR: libFuzzer: timeout' "$log" || return 1
    unit=$(sed -n 's/^Test unit written to //p' "$log" | tail -1)
    [ -n "$unit" ] && [ -f "$unit" ] || return 1
    (ulimit -t 60 && nice -n 19 cargo +nightly fuzz run "${build[@]}" "$target" "$unit" -- -runs=1 -timeout=0) \
        >"$log.replay" 2>&1 || return 1
    mkdir -p "work/$target.replayed-timeouts" && mv "$unit" "work/$target.replayed-timeouts/"
}
# One job's campaign on TARGET into work/TARGET$SUFFIX: libFuzzer runs (again with what is left of the budget
# after a timeout that passes when replayed), each appended to runs.tsv. Returns 1 after a crash.
campaign() {
    local target=$1 suffix=$2 started=$SECONDS done_runs=0 budget left need result execs took cpu
    local out="work/$target$suffix" log="work/$target$suffix.log"
    while :; do
        budget=()
        if [ -n "$seconds_limit" ]; then
            left=$((seconds_limit - (SECONDS - started)))
            [ "$left" -gt 0 ] || break
            budget+=("-max_total_time=$left")
        fi
        if [ -n "$runs_limit" ] && [ -z "$to_total" ]; then
            [ $((runs_limit - done_runs)) -gt 0 ] || break
            budget+=("-runs=$((runs_limit - done_runs))")
        fi
        if [ -n "$to_total" ]; then
            # This job's share of what is left (other jobs' finished runs are in the total already).
            need=$((to_total - $(total_of "$target")))
            [ "$need" -gt 0 ] || { echo "== $target$suffix: $(total_of "$target") executions already"; break; }
            budget+=("-runs=$(((need + jobs - 1) / jobs))")
        fi
        mkdir -p "$out"
        echo "== $target$suffix (${budget[*]})"
        result=ok
        /usr/bin/time -f '%U %S' -o "$out.cpu" nice -n 19 cargo +nightly fuzz run "${build[@]}" "$target" \
            "$out" "corpus/$target" -- "${budget[@]}" -max_len="$(max_len "$target")" -timeout="$unit_timeout" \
            -rss_limit_mb=2048 -reload=0 -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1 ||
            result=crash
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
        # SIGINT (a campaign stopped by hand at a session's end): libFuzzer says so and exits 72.
        if [ "$result" = crash ] && grep -q 'libFuzzer: run interrupted' "$log"; then
            result=stopped
        elif [ "$result" = crash ] && replayed_timeout_passes "$log" "$target"; then
            result=timeout-replayed-ok
        fi
        if [ "$result" = crash ]; then
            grep -E '^(==[0-9]+==|thread|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -20 || true
        fi
        # CPU seconds the fuzzer got (user + system, cargo's share included): on a shared machine at nice 19 the
        # wall-clock seconds say little about its speed.
        cpu=$(awk 'END { if (NF == 2) printf "%.0f", $1 + $2 }' "$out.cpu" 2>/dev/null || true)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$commit" "$target" "${execs:-?}" \
            "${took:-?}" "$result" "${cpu:-?}" "$build_name" >> runs.tsv
        echo "   $target$suffix: ${execs:-?} executions in ${took:-?} s (${cpu:-?} s of CPU), $result"
        [ "$result" != crash ] || return 1
        [ "$result" = timeout-replayed-ok ] || break
        done_runs=$((done_runs + ${execs:-0}))
    done
}

for target in "${targets[@]}"; do
    mkdir -p "artifacts/$target" "corpus/$target"
    outs=("work/$target")
    if [ "$jobs" -eq 1 ]; then
        campaign "$target" "" || failed+=("$target")
    else
        outs=() pids=()
        for job in $(seq 1 "$jobs"); do
            outs+=("work/$target.j$job")
            campaign "$target" ".j$job" &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || failed+=("$target (job $pid)")
        done
    fi
    # Minimise: the committed corpus becomes the smallest set covering what the directories cover.
    rm -rf "work/$target.min" && mkdir -p "work/$target.min"
    present=()
    for out in "${outs[@]}"; do [ -d "$out" ] && present+=("$out"); done
    nice -n 19 cargo +nightly fuzz run "${build[@]}" "$target" "work/$target.min" "corpus/$target" "${present[@]}" -- \
        -merge=1 -max_len="$(max_len "$target")" -timeout="$unit_timeout" -rss_limit_mb=2048 >"work/$target.merge.log" 2>&1 &&
        [ -n "$(ls -A "work/$target.min")" ] &&
        rm -rf "corpus/$target" && mv "work/$target.min" "corpus/$target" &&
        rm -rf "${present[@]}"
done
awk -F'\t' 'NR > 1 && $4 ~ /^[0-9]+$/ { total[$3] += $4 } END { for (t in total) printf "   total %s: %d executions\n", t, total[t] }' runs.tsv | sort
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
