# Sourced by the instruction-counting scripts (instr-count.sh,
# instr-count-e2e.sh): installs valgrind when missing, and defines
# `bench_executable PACKAGE BENCH`, which builds a bench target of this
# checkout (`cargo bench --no-run`) and prints the path of its executable.

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_cmd valgrind valgrind
install_needed

bench_executable() {
    cargo bench -p "$1" --bench "$2" --no-run --message-format=json 2>/dev/null |
        BENCH="$2" python3 -c 'import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == os.environ["BENCH"] and m.get("executable"):
        print(m["executable"])'
}
