# The ixcp configuration the scripts run ixcp with (sourced by ixcp-demo.sh,
# ixcp-efficiency.sh and idle-cost.sh): one managed interface, one grant to
# nobody (uid 65534), the CPUs and the policy given; and how the measuring
# scripts start ixcp and an ix-http dataplane under it.
#
#   . scripts/ixcp-config.sh
#   ixcp_config FILE SOCKET INTERFACE ADDRESS PORTS POLLING_CPUS SHARED_CPUS [POLICY]
#   ixcp_start BINARY NETNS FILE SOCKET LOG CPU
#   ixcp_dataplane SOCKET ADDRESS PORT LOG COMMAND...
#
# PORTS, POLLING_CPUS and SHARED_CPUS are TOML array bodies ("8080, 11211",
# "1"); an empty SHARED_CPUS leaves ixcp's default (every CPU). POLICY holds the
# `[policy]` table's lines ("poll_above = 0.6", one per line); empty: ixcp's
# defaults.

ixcp_config() {
    local file=$1 socket=$2 interface=$3 address=$4 ports=$5 polling=$6 shared=$7 policy=${8:-}
    {
        echo "socket = \"$socket\""
        echo "[[interface]]"
        echo "name = \"$interface\""
        echo "[[grant]]"
        echo "uid = 65534"
        echo "interface = \"$interface\""
        echo "addresses = [\"$address\"]"
        echo "ports = [$ports]"
        echo "[cpus]"
        echo "polling = [$polling]"
        [ -n "$shared" ] && echo "shared = [$shared]"
        if [ -n "$policy" ]; then
            echo "[policy]"
            echo "$policy"
        fi
    } > "$file"
}

# Starts ixcp (BINARY) at nice -20 on CPU CPU in network namespace NETNS with
# the configuration FILE, its log (RUST_LOG as the caller exports it) appended
# to LOG, and waits up to 5 s for its SOCKET. Sets IXCP_PID.
ixcp_start() {
    local binary=$1 netns=$2 file=$3 socket=$4 log=$5 cpu=$6
    rm -f "$socket"
    nice -n -20 taskset -c "$cpu" ip netns exec "$netns" "$binary" --config "$file" 2>>"$log" &
    IXCP_PID=$!
    for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
}

# Runs COMMAND (an ix-http or other dataplane and its arguments) in the
# background at nice -20 as nobody, with no capabilities, on ixcp's SOCKET for
# PORT at ADDRESS/24, its output appended to LOG. Sets DATAPLANE_PID.
ixcp_dataplane() {
    local socket=$1 address=$2 port=$3 log=$4
    shift 4
    nice -n -20 setpriv --reuid=65534 --regid=65534 --clear-groups "$@" \
        --backend "ixcp:$socket,ports=$port" --addr "$address/24" --port "$port" >>"$log" 2>&1 &
    DATAPLANE_PID=$!
}
