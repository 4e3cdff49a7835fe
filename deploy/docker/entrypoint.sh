#!/bin/sh
# Chooses the Palisade binary by the first argument; the rest are its flags.
#   controller [flags]   palisade-controller
#   driver [flags]       palisade-driver (needs hostNetwork, NET_ADMIN, NET_RAW)
#   ctl [args]           palisadectl
#   openstack [args]     palisade-openstack (the Neutron adapter)
# Anything else is executed as given (e.g. `sh`, `iptables-save`).
# `exec` keeps the binary the direct child of tini, so it receives SIGTERM.
set -e
case "${1:-}" in
  controller|palisade-controller) shift; exec node --max-semi-space-size=64 /app/dist/services/controller/main.js "$@" ;;
  driver|palisade-driver)         shift; exec node /app/dist/services/driver/main.js "$@" ;;
  ctl|palisadectl)                shift; exec node /app/dist/services/cli/main.js "$@" ;;
  openstack|palisade-openstack)   shift; exec node /app/dist/services/openstack/main.js "$@" ;;
  "") echo "usage: controller|driver|ctl|openstack [flags…]" >&2; exit 2 ;;
  *) exec "$@" ;;
esac
