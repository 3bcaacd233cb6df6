#!/usr/bin/env bash
# The whole test suite: installs what the tests need when it is missing, then
# checks formatting and lints and runs every test (release build: the simulation
# and interop tests are heavy). Tests that need root skip with a reason outside
# CI; with CI=true a missing privilege fails them.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive as real peers or to build their networks.
# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_cmd ip iproute2
need_cmd ping iputils-ping
need_cmd ethtool ethtool
need_cmd nft nftables
need_cmd curl curl
need_cmd wrk wrk
need_cmd h2load nghttp2-client
# The SYN flood of examples/http/tests/http_syn_flood.rs.
need_cmd hping3 hping3
# Peers of the benchmark harness (benches/tests/harness_quick.rs) and of
# examples/kv/tests (memcached for the differential test, libmemcached-tools).
need_cmd nginx nginx-light
need_cmd memcached memcached
need_cmd memccp libmemcached-tools
need_cmd taskset util-linux
install_needed

# pymemcache (PyPI) for examples/kv/tests/real_clients.rs, into the python3 on PATH.
if ! python3 -c 'import pymemcache' >/dev/null 2>&1; then
    python3 -m pip --version >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
    }
    python3 -m pip install -q pymemcache || python3 -m pip install -q --break-system-packages pymemcache
fi

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# Each phase's banner carries the time the previous one took (the first, the
# installs above), and the last line the whole run's, so a slow run's log shows
# where its time went.
phase_start=0
phase_name="installing what the tests need"
phase() {
    echo "== ($phase_name took $((SECONDS - phase_start)) s)"
    phase_name=$1
    phase_start=$SECONDS
    echo "== $1"
}

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "import circles in ix-runtime and ix-driver"
python3 scripts/module-cycles.py ix-runtime/src
python3 scripts/module-cycles.py ix-driver/src
phase "cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
phase "cargo test (release)"
# --no-fail-fast: a failing test binary does not hide the ones after it (the run still fails).
cargo test --workspace --release --no-fail-fast
# The runtime benchmark's smoke run (a few seconds): every IX and tokio echo
# case completes and every echo is checked; it exits non-zero otherwise.
phase "cargo bench -p ix-runtime --bench echo -- --quick"
cargo bench -p ix-runtime --bench echo -- --quick
# The in-process end-to-end bench's smoke runs (seconds): ix-http and ix-kv on IX
# with an IX client over the mem wire, every response parsed and checked.
phase "cargo bench -p ix-benches --bench inprocess -- --count 300 --connections 1,32"
cargo bench -p ix-benches --bench inprocess -- --count 300 --connections 1,32
phase "cargo bench -p ix-benches --bench inprocess -- --quick --connections 32"
cargo bench -p ix-benches --bench inprocess -- --quick --connections 32
# The igb backend end to end: a QEMU guest with an emulated 82576 behind a
# virtual IOMMU (a few minutes; installs QEMU 10 and a Debian kernel once).
phase "scripts/igb-e2e.sh"
scripts/igb-e2e.sh
echo "== ($phase_name took $((SECONDS - phase_start)) s; the whole run $SECONDS s)"
