#!/usr/bin/env bash
# palisade-certs.sh — a private CA and the certificates Palisade's mTLS needs.
#
#   palisade-certs.sh DIR init [SAN…]        CA, the controller's certificate, and one admin (admin-admin)
#   palisade-certs.sh DIR controller [SAN…]  controller.crt/.key (serverAuth); SANs like DNS:ctl.example or IP:10.0.0.5
#   palisade-certs.sh DIR host NAME          host-NAME.crt/.key: a driver; NAME must equal its --hostname
#   palisade-certs.sh DIR admin NAME         admin-NAME.crt/.key: may change policy (palisadectl, palisade-openstack)
#   palisade-certs.sh DIR reader NAME        reader-NAME.crt/.key: may read policy and status, trace
#
# Options (before DIR): --days N (leaf validity, default 397), --force (overwrite).
# Identity is the subject: O=palisade, OU=<role>, CN=<name> (services/runtime/tls.ts).
# The controller certificate always names localhost, 127.0.0.1 and ::1 (Unix
# sockets are verified as "localhost"); add the names drivers dial.
# Keys are EC P-256, written 0600; ca.key never leaves the machine that signs.
set -euo pipefail

DAYS=397
FORCE=0
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --days) DAYS=${2:?--days needs a number}; shift 2 ;;
    --force) FORCE=1; shift ;;
    --help|-h) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "palisade-certs.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
usage() { echo "usage: palisade-certs.sh [--days N] [--force] DIR init|controller|host|admin|reader [NAME|SAN…]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
DIR=$1 CMD=$2
shift 2
[[ $DAYS =~ ^[0-9]{1,5}$ && $DAYS -ge 1 ]] || { echo "palisade-certs.sh: --days must be a number of days, at least 1" >&2; exit 2; }
command -v openssl >/dev/null || { echo "palisade-certs.sh: openssl is required (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$DIR"
umask 077

check_name() {
  # The model's host-name characters; at most 64 because it becomes the
  # certificate's CN (X.509 ub-common-name).
  [[ $1 =~ ^[A-Za-z0-9_.-]{1,64}$ && $1 != . && $1 != .. ]] || { echo "palisade-certs.sh: invalid name '$1' (1-64 letters, digits, '_', '.', '-')" >&2; exit 2; }
}

# Runs openssl quietly; on failure shows what it said, removes the half-made
# files (so a retry needs no --force) and exits.
ossl() {
  local out
  if ! out=$(openssl "$@" 2>&1); then
    echo "palisade-certs.sh: openssl $1 failed:" >&2
    echo "$out" >&2
    rm -f "${CLEANUP[@]}"
    exit 1
  fi
}
CLEANUP=()

check_san() {
  [[ $1 =~ ^(DNS:[A-Za-z0-9.*-]{1,253}|IP:[0-9A-Fa-f:.]{2,45})$ ]] || { echo "palisade-certs.sh: invalid SAN '$1' (DNS:name or IP:address)" >&2; exit 2; }
}

refuse_overwrite() {
  if [[ $FORCE -eq 0 && -e "$DIR/$1.key" ]]; then
    echo "palisade-certs.sh: $DIR/$1.key exists (use --force to replace it)" >&2
    exit 1
  fi
}

ca() {
  if [[ -e "$DIR/ca.key" ]]; then return; fi
  CLEANUP=("$DIR/ca.key" "$DIR/ca.crt")
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -subj "/O=palisade/CN=palisade-ca" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign"
  chmod 0644 "$DIR/ca.crt"
  echo "created $DIR/ca.crt (and ca.key: keep it offline)"
}

# leaf FILE OU CN EKU [SAN…]
leaf() {
  local file=$1 ou=$2 cn=$3 eku=$4
  shift 4
  [[ -e "$DIR/ca.key" ]] || { echo "palisade-certs.sh: no CA in $DIR (run: palisade-certs.sh $DIR init)" >&2; exit 1; }
  refuse_overwrite "$file"
  local ext="$DIR/$file.ext"
  CLEANUP=("$ext" "$DIR/$file.csr" "$DIR/$file.key" "$DIR/$file.crt")
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    if [[ $# -gt 0 ]]; then (IFS=,; echo "subjectAltName=$*"); fi
  } >"$ext"
  ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$DIR/$file.key" -out "$DIR/$file.csr" -subj "/O=palisade/OU=$ou/CN=$cn"
  ossl x509 -req -in "$DIR/$file.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days "$DAYS" -out "$DIR/$file.crt" -extfile "$ext"
  rm -f "$ext" "$DIR/$file.csr"
  chmod 0600 "$DIR/$file.key"
  chmod 0644 "$DIR/$file.crt"
  echo "created $DIR/$file.crt ($ou '$cn') and $DIR/$file.key"
}

controller() {
  local sans=("DNS:localhost" "IP:127.0.0.1" "IP:::1")
  for s in "$@"; do check_san "$s"; sans+=("$s"); done
  leaf controller controller palisade-controller "serverAuth" "${sans[@]}"
}

case $CMD in
  init)
    ca
    controller "$@"
    leaf admin-admin admin admin clientAuth
    ;;
  controller) controller "$@" ;;
  host|admin|reader)
    [[ $# -eq 1 ]] || usage
    check_name "$1"
    leaf "$CMD-$1" "$CMD" "$1" clientAuth
    ;;
  *) usage ;;
esac
