#!/usr/bin/env bash
# The main job: the side-by-side benchmark of IX against tokio, nginx and
# memcached. Installs the peers it drives when missing (as root), builds every
# binary once in release, then runs the harness with the arguments given
# (`--quick` for the under-two-minutes mode; `--out DIR`, default results/).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_needed=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_needed+=("$2"); }
need_cmd ip iproute2
need_cmd ethtool ethtool
need_cmd nginx nginx-light
need_cmd memcached memcached
need_cmd taskset util-linux
if [ "${#apt_needed[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing: ${apt_needed[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
    else
        echo "missing packages (run as root to install them, or the harness skips what needs them): ${apt_needed[*]}" >&2
    fi
fi

cargo build --release --bins
exec target/release/ix-bench "$@"
