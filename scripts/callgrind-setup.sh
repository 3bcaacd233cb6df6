# Sourced by the instruction-counting scripts (instr-count.sh,
# instr-count-e2e.sh). Defines:
#   count_options SCRIPT CHOICES EXTRA ARGS...: reads the options they share,
#     --bench BINARY, --n1 N1, --n2 N2 and --only CHOICE (one of the
#     |-separated CHOICES), into the globals bench, n1, n2 and only, whose
#     defaults the caller set; each `--NAME:VARIABLE` word of EXTRA adds an
#     option `--NAME VALUE` read into the global VARIABLE. Checks that N2
#     exceeds N1; on a bad option prints SCRIPT's usage and exits 2.
#   need_valgrind: installs valgrind when missing.
#   bench_executable PACKAGE BENCH: builds a bench target of this checkout
#     (`cargo bench --no-run`) and prints the path of its executable.

# shellcheck source=scripts/packages.sh
. scripts/packages.sh

count_options() {
    local script=$1 choices=$2 extra=$3 spec variable
    shift 3
    local usage="usage: $script [--bench BINARY] [--n1 N1] [--n2 N2] [--only $choices]"
    for spec in $extra; do
        variable=${spec#*:}
        usage+=" [${spec%%:*} ${variable^^}]"
    done
    while [ $# -gt 0 ]; do
        [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
        case "$1" in
            --bench) bench=$2 ;;
            --n1) n1=$2 ;;
            --n2) n2=$2 ;;
            --only) only=$2 ;;
            *)
                variable=''
                for spec in $extra; do
                    [ "$1" != "${spec%%:*}" ] || variable=${spec#*:}
                done
                [ -n "$variable" ] || { echo "$usage" >&2; exit 2; }
                printf -v "$variable" '%s' "$2"
                ;;
        esac
        shift 2
    done
    [ "$n2" -gt "$n1" ] || { echo "$(basename "$script" .sh): --n2 must exceed --n1" >&2; exit 2; }
    case "|$choices|" in
        *"|$only|"*) ;;
        *) [ -z "$only" ] || { echo "$usage" >&2; exit 2; } ;;
    esac
}

need_valgrind() {
    need_cmd valgrind valgrind
    install_needed
}

bench_executable() {
    cargo bench -p "$1" --bench "$2" --no-run --message-format=json 2>/dev/null |
        BENCH="$2" python3 -c 'import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == os.environ["BENCH"] and m.get("executable"):
        print(m["executable"])'
}
