#!/usr/bin/env bash
# `npm start`: install what is missing, build, and run the demo (etcd, a
# controller, a driver in a demo hypervisor namespace with three workloads).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/dev/ensure-deps.sh
npx tsc -p tsconfig.json
exec node dist/services/lab/quickstart.js "$@"
