#!/usr/bin/env bash
# Installs Debian's neutron-server (OpenStack Neutron 21.0.0, Zed) and the
# `openstack` command-line client (python3-openstackclient 6.0.0, for
# test/e2e/openstack-cli.test.ts) when either is missing, for the OpenStack
# tests and `npm run bench` only (`npm start` never needs them). About 270 MB
# and 40 s on a fresh Debian 12.
# Debian packages only: no pip. The package must not start a system Neutron
# (policy-rc.d refuses every service start during the install); the tests
# start their own neutron-server as a child process (test/lab/neutron-process.ts).
set -euo pipefail

have() {
  /usr/bin/python3 -c 'import neutron.server, neutron.db.models_v2, openstackclient.shell' >/dev/null 2>&1 &&
    [ -x /usr/bin/neutron-server ] && [ -x /usr/bin/openstack ]
}
have && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "palisade: neutron-server or python3-openstackclient (Debian packages) is missing; run as root or install them" >&2
  exit 1
fi
echo "palisade: installing neutron-server and python3-openstackclient (Debian, ~270 MB)" >&2
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Leave an existing policy-rc.d alone (someone else's install may be running);
# remove only the one written here.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# dbconfig-common would ask to set up a database: the tests build their own.
echo "neutron-common neutron/configure_db boolean false" | debconf-set-selections 2>/dev/null || true
apt-get install -y -qq --no-install-recommends neutron-server python3-openstackclient >/dev/null
have || { echo "palisade: neutron-server and python3-openstackclient installed but python3 cannot import neutron or openstackclient" >&2; exit 1; }
echo "palisade: neutron-server and python3-openstackclient installed in $(( $(date +%s) - start )) s" >&2
