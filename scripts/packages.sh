# Sourced by test.sh and bench.sh: collect the Debian packages whose commands
# are missing (`need_cmd CMD PACKAGE`), then `install_needed` installs them
# when running as root and says what is missing otherwise.
apt_needed=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_needed+=("$2"); }
install_needed() {
    [ "${#apt_needed[@]}" -gt 0 ] || return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing: ${apt_needed[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
    else
        echo "missing packages (run as root to install them): ${apt_needed[*]}" >&2
    fi
}
