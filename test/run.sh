#!/usr/bin/env bash
# `npm test`: installs what is missing, checks the protos and generated
# code, builds, starts a real etcd on a free loopback port, runs every
# vitest suite (unit, integration, dataplane, e2e), and always cleans up
# what it started — by PID — and the namespaces it created, also on failure.
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
ETCD_PID=""
cleanup() {
  if [ -n "$ETCD_PID" ] && kill -0 "$ETCD_PID" 2>/dev/null; then
    kill "$ETCD_PID" 2>/dev/null; sleep 0.5; kill -9 "$ETCD_PID" 2>/dev/null
  fi
  # Leftover namespaces of this run only (tests delete theirs; this catches crashes).
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^p${PALISADE_TEST_RUN}" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT INT TERM

step "etcd"
port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
CLIENT_PORT=$(port); PEER_PORT=$(port)
etcd --name palisade-test --data-dir "$RUN_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "palisade-test=http://127.0.0.1:$PEER_PORT" \
  --max-txn-ops 10000 --max-request-bytes 33554432 >"$RUN_DIR/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 1 100); do
  node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "http://127.0.0.1:$CLIENT_PORT/health" && break
  sleep 0.2
done
export PALISADE_TEST_ETCD="http://127.0.0.1:$CLIENT_PORT"
echo "etcd pid $ETCD_PID at $PALISADE_TEST_ETCD"

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
