#!/usr/bin/env bash
# `npm start`: install what is missing, build, and run the demo (etcd, a
# controller, a driver in a demo hypervisor namespace with three workloads).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/dev/ensure-deps.sh
npx tsc -p tsconfig.json
# Put palisadectl, palisade-controller and palisade-driver on PATH.
npm link --no-audit --no-fund --loglevel=error >/dev/null 2>&1 || echo "note: 'npm link' failed; use node dist/services/cli/main.js instead of palisadectl" >&2
exec node dist/deploy/quickstart/quickstart.js "$@"
