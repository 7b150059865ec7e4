#!/usr/bin/env bash
# Installs what Shoal's build and tests need on a fresh Debian machine (as root). Idempotent.
set -euo pipefail
pkgs=(protobuf-compiler containerd runc busybox-static etcd-server etcd-client docker-registry
      prometheus systemd iproute2 curl iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
