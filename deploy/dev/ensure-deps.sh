#!/usr/bin/env bash
# Installs what Palisade needs on a Debian machine — only what is missing —
# so `npm start` and `npm test` work on a fresh machine as root.
#   Debian: etcd-server (etcd), etcd-client (etcdctl), iptables (nft + legacy), nftables (nft), ipset, iproute2, iputils-ping (tests), openssl (certificates), tcpdump (flow reports), conntrack (tests)
#   npm:    the locked dependencies (npm ci)
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
{ command -v iptables-nft-restore && command -v iptables-legacy-restore; } >/dev/null 2>&1 || need+=(iptables)
command -v ipset >/dev/null 2>&1 || need+=(ipset)
# nft monitor: the driver's tamper watch on the nft backend (DESIGN §6.9).
command -v nft >/dev/null 2>&1 || need+=(nftables)
# etcdctl: the space-alarm runbook and its test (alarm list/disarm, defrag).
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# tcpdump: the driver's NFLOG reader (flow reports, DESIGN §6.12): it reads
# `nflog:GROUP` inside the driver's network namespace and writes pcap.
command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
# conntrack: the tests list conntrack entries per zone (DESIGN §6.13).
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
# Used by the tests and deploy/ha: ICMP probes, crafted packets, health checks.
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
# deploy/tls/palisade-certs.sh (the TLS tests make their certificates with it).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "palisade: missing Debian packages (${need[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "palisade: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Installing etcd-server must not start a system etcd (no systemd here;
  # elsewhere policy-rc.d keeps it from starting): we run our own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

install=0
[ -d node_modules ] || install=1
[ package-lock.json -nt node_modules/.package-lock.json ] && install=1
if [ "$install" = 1 ]; then
  echo "palisade: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
exit 0
