#!/usr/bin/env bash
# Installs the Debian packages Shoal's build, quickstart and tests need on a fresh Debian bookworm
# machine (as root). Idempotent: installs only what is missing. The Rust toolchain (rustup) is a
# prerequisite, not installed here.
#
#   bash scripts/install-deps.sh           # build, quickstart, tests
#   bash scripts/install-deps.sh --bench   # also the Raft benchmark's etcd (raft-bench --features etcd)
#
# scripts/pristine-check.sh proves on a minimal bookworm root that this list is complete.
set -euo pipefail
# Build: protoc for containerd-client's protos (which carry their own google/protobuf includes), a C
# compiler and libc headers for ring's C code, CA certificates for cargo's downloads.
build=(protobuf-compiler gcc libc6-dev ca-certificates)
# Run: containerd and runc; busybox for the demo and test images; ip, mount, pkill and python3 used
# by the quickstart and the tests; curl for health checks.
run=(containerd runc busybox-static iproute2 mount procps python3 curl)
# Tests only: a local registry, promtool (metrics format), systemd-analyze (unit files), iptables
# (the Raft fault test partitions a coordinator).
tests=(docker-registry prometheus systemd iptables)
# The Raft benchmark only: an etcd cluster to compare with, and the protobuf include files that
# etcd-client's build script needs (google/protobuf/*.proto).
bench=(etcd-server etcd-client libprotobuf-dev)

pkgs=("${build[@]}" "${run[@]}" "${tests[@]}")
case "${1:-}" in
  "") ;;
  --bench) pkgs+=("${bench[@]}") ;;
  *) echo "usage: $0 [--bench]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
