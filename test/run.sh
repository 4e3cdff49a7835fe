#!/usr/bin/env bash
# `npm test`: installs what is missing, checks the protos and generated
# code, builds, runs every vitest project (unit; integration, dataplane and
# e2e with a real etcd on a free loopback port, started by vitest's global
# setup), and always cleans up the namespaces its tests created, also on
# failure.
# Ends with a plain "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_COLOR=1 FORCE_COLOR=0

bash deploy/dev/ensure-deps.sh || exit 1
# A real Neutron for the OpenStack tests (about 270 MB, 40 s to 3.5 min on a
# fresh machine); `npm start` does not need it.
bash deploy/dev/ensure-neutron.sh || exit 1

step() { printf '\n== %s\n' "$*"; }
step "proto lint and generated code"
bash test/check-generated.sh || exit 1
step "build"
npx tsc -p tsconfig.json || exit 1
npx tsc -p tsconfig.test.json || exit 1

RUN_DIR=$(mktemp -d /tmp/palisade-test.XXXXXX)
# Every namespace a test creates starts with p<run id> (test/support/binaries.ts).
export PALISADE_TEST_RUN=$(tr -dc 'a-z0-9' </dev/urandom | head -c 4)
cleanup() {
  # Leftover namespaces of this run only (tests delete theirs; this catches crashes).
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^p${PALISADE_TEST_RUN}" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT INT TERM

# etcd is started in one place: the integration project's global setup
# (test/setup/global-etcd.ts, with test/lab/etcd-process.ts), which stops it
# by PID at the end. The unit project needs none.
step "vitest"
REPORT="$RUN_DIR/vitest.json"
npx vitest run --reporter=default --reporter=json --outputFile.json="$REPORT" "$@" </dev/null
STATUS=$?

node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$REPORT" 2>/dev/null || echo "0 passed, 1 failed"
exit $STATUS
