#!/usr/bin/env bash
# HTTPS side by side, over loopback: ix-http on IX (kernel backend) and on
# tokio, one core each, the same rustls configuration (a P-256 certificate made
# here with openssl), h2load as the client (HTTP/1.1 and HTTP/2 by ALPN).
# Servers pinned to CPU 0, h2load to CPU 1; rounds interleave the two servers.
# Not part of the side-by-side harness (ixload speaks no TLS yet).
#
#   scripts/bench-https.sh [-n REQUESTS] [-c CONNECTIONS] [-r ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

requests=20000 conns=32 rounds=3
while [ $# -gt 0 ]; do
    case "$1" in
        -n) requests=$2; shift 2 ;;
        -c) conns=$2; shift 2 ;;
        -r) rounds=$2; shift 2 ;;
        *) echo "usage: $0 [-n REQUESTS] [-c CONNECTIONS] [-r ROUNDS]" >&2; exit 2 ;;
    esac
done
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release -p ix-example-http --bin ix-http >&2
bin=target/release/ix-http
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
    -out "$dir/cert.pem" -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -days 1 2>/dev/null
tls=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
taskset -c 0 "$bin" --runtime ix --backend kernel --cores 1 --port 18443 "${tls[@]}" >/dev/null &
taskset -c 0 "$bin" --runtime tokio --cores 1 --port 18444 "${tls[@]}" >/dev/null &
sleep 2
echo "round runtime protocol requests/s"
for round in $(seq "$rounds"); do
    for runtime in ix tokio; do
        port=$([ "$runtime" = ix ] && echo 18443 || echo 18444)
        for protocol in h1 h2; do
            mode=$([ "$protocol" = h1 ] && echo "--h1 -m 1" || echo "-m 8")
            # shellcheck disable=SC2086
            rps=$(taskset -c 1 h2load $mode -n "$requests" -c "$conns" "https://127.0.0.1:$port/" 2>/dev/null |
                awk '/^finished in/ {print $4}')
            echo "$round $runtime $protocol $rps"
        done
    done
done
