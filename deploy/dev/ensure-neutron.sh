#!/usr/bin/env bash
# Installs Debian's neutron-server (OpenStack Neutron 21.0.0, Zed) when it is
# missing, for the OpenStack integration tests and `npm run bench` only
# (`npm start` never needs it). About 270 MB and 40 s on a fresh Debian 12.
# Debian packages only: no pip. The package must not start a system Neutron
# (policy-rc.d refuses every service start during the install); the tests
# start their own neutron-server as a child process (test/helpers/neutron.ts).
set -euo pipefail

have() { /usr/bin/python3 -c 'import neutron.server, neutron.db.models_v2' >/dev/null 2>&1 && [ -x /usr/bin/neutron-server ]; }
have && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "palisade: neutron-server (Debian package) is missing; run as root or install it" >&2
  exit 1
fi
echo "palisade: installing neutron-server (Debian, ~270 MB)" >&2
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
apt-get install -y -qq --no-install-recommends neutron-server >/dev/null
have || { echo "palisade: neutron-server installed but python3 cannot import neutron" >&2; exit 1; }
echo "palisade: neutron-server installed in $(( $(date +%s) - start )) s" >&2
