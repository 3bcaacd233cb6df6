# The ixcp configuration the scripts run ixcp with (sourced by ixcp-demo.sh,
# ixcp-efficiency.sh and idle-cost.sh): one managed interface, one grant to
# nobody (uid 65534), the CPUs and the policy given.
#
#   . scripts/ixcp-config.sh
#   ixcp_config FILE SOCKET INTERFACE ADDRESS PORTS POLLING_CPUS SHARED_CPUS [POLICY]
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
