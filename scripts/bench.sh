#!/usr/bin/env bash
# The main job: the side-by-side benchmark of IX against tokio, nginx and
# memcached. Installs the peers it drives when missing (as root), builds every
# binary once in release, then runs the harness with the arguments given
# (`--quick` for the under-two-minutes mode; `--out DIR`, default results/).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_cmd ip iproute2
need_cmd ethtool ethtool
need_cmd nginx nginx-light
need_cmd memcached memcached
need_cmd taskset util-linux
install_needed

cargo build --release --bins
exec target/release/ix-bench "$@"
