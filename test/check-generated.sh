#!/usr/bin/env bash
# buf lint, and generated code must match the protos (never edited by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r services/gen "$tmp/before"
npx buf generate
if ! diff -r "$tmp/before" services/gen >/dev/null; then
  echo "services/gen is stale: run 'npm run generate' and commit the result" >&2
  diff -r "$tmp/before" services/gen | head -20 >&2
  exit 1
fi
if git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto 2>/dev/null; then
  npx buf breaking --against '.git#branch=main'
fi
echo "protos lint clean; generated code up to date"
