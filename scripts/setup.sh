#!/usr/bin/env bash
# Installs what erebus, its tests and its demo need on a Debian machine (run as root):
# the Debian packages of the test lab and a virtual environment in .venv built from
# Debian's /usr/bin/python3 (so the unprivileged user the lab runs erebus as can use it).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openvpn tshark curl iproute2 iputils-ping openssl python3 python3-venv
              python3-pip util-linux procps ca-certificates dnsmasq-base
              charon-systemd strongswan-swanctl libcharon-extra-plugins
              libstrongswan-extra-plugins libstrongswan-standard-plugins
              tinyproxy dante-server python3-socks openssh-client openssh-server
              nodejs wireguard-go wireguard-tools)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip &&
       .venv/bin/python -m pip install -q -e '.[test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed" >&2
    exit 1
fi
rm -f "$log"
echo "setup: done ($(.venv/bin/python --version), $(openvpn --version | head -1 | cut -d' ' -f1-2))"
