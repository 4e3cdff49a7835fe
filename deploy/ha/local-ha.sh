#!/usr/bin/env bash
# A local high-availability lab, on this machine, as root:
#   - a THREE-member etcd cluster on 127.0.0.1 (free ports, data in a temp dir)
#   - two palisade-controller replicas, each on a loopback TCP port and a Unix socket
#   - two "hypervisors": network namespaces pal-ha-hv1 / pal-ha-hv2, each running
#     a palisade-driver connected to both controllers (unix sockets cross namespaces)
# It prints what it started and how to try failover by hand, then waits for
# Ctrl-C. On exit it stops exactly the PIDs it started and deletes exactly the
# namespaces it created. It never touches the root namespace's firewall: the
# drivers only ever run inside the namespaces created here.
#
#   bash deploy/ha/local-ha.sh            # run until Ctrl-C
#   bash deploy/ha/local-ha.sh --check    # start, verify, fail over, print OK, exit
#
# --check: waits until both drivers are in sync (palisadectl status -o json),
# applies deploy/examples/db-user.yaml and waits for it, kills controller 1 and
# waits until both drivers are in sync again through controller 2, kills one
# etcd member and verifies a write through controller 2 still converges.
# Exit 0 and "OK" on success, 1 and the tail of the logs otherwise.
#
# Environment: PALISADE_HA_KEEP=1 keeps the temp dir (logs, etcd data) on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=run
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "local-ha: must run as root (network namespaces, iptables inside them)" >&2
  exit 1
fi

# PALISADE_HA_SKIP_BUILD=1: dist/ is current (the test suite builds once and
# must not have it rewritten under running processes).
if [ "${PALISADE_HA_SKIP_BUILD:-}" != 1 ]; then
  bash deploy/dev/ensure-deps.sh
  npx tsc -p tsconfig.json
fi

NAMESPACES_WANTED=(pal-ha-hv1 pal-ha-hv2)
for ns in "${NAMESPACES_WANTED[@]}"; do
  # Never adopt (and later delete) a namespace someone else created.
  if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
    echo "local-ha: network namespace $ns already exists (another run?); delete it first: ip netns delete $ns" >&2
    exit 1
  fi
done

WORK="$(mktemp -d /tmp/palisade-ha.XXXXXX)"
PIDS=()        # every process we started and have not stopped yet
NAMES=()       # parallel to PIDS, for messages
CREATED_NS=()  # namespaces we created
CLEANED=0

# Stops one PID we started, but only if it still is our process: every command
# line we start mentions $WORK, so a recycled PID is never signalled.
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$WORK"; }

stop_pids() {
  local sig="$1"; shift
  local pid
  for pid in "$@"; do ours "$pid" && kill "-$sig" "$pid" 2>/dev/null || true; done
}

forget_pid() { # removes a PID from PIDS/NAMES after we stopped it on purpose
  local i
  for i in "${!PIDS[@]}"; do
    if [ "${PIDS[$i]}" = "$1" ]; then unset 'PIDS[i]' 'NAMES[i]'; fi
  done
  PIDS=("${PIDS[@]}"); NAMES=("${NAMES[@]}")
}

cleanup() {
  local rc=$?
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap - INT TERM
  if ((${#PIDS[@]})); then
    echo "local-ha: stopping ${PIDS[*]}" >&2
    # SIGTERM to all: drivers exit leaving their rules in place (harmless:
    # their namespaces are deleted next), controllers and etcd shut down.
    stop_pids TERM "${PIDS[@]}"
    local deadline=$((SECONDS + 10)) pid alive
    while :; do
      alive=()
      for pid in "${PIDS[@]}"; do ours "$pid" && alive+=("$pid"); done
      ((${#alive[@]})) || break
      if ((SECONDS >= deadline)); then
        echo "local-ha: SIGKILL ${alive[*]}" >&2
        stop_pids KILL "${alive[@]}"
        break
      fi
      sleep 0.2
    done
    wait 2>/dev/null || true
  fi
  local ns
  for ns in "${CREATED_NS[@]}"; do
    ip netns delete "$ns" 2>/dev/null || echo "local-ha: could not delete namespace $ns" >&2
  done
  if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ]; then
    local f
    for f in "$WORK"/*.log; do [ -e "$f" ] && { echo "--- tail $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
  if [ "${PALISADE_HA_KEEP:-0}" = 1 ]; then
    echo "local-ha: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a command in the background with its output in $WORK/<name>.log.
# A simple backgrounded command is exec'd by the forked shell, so $! is the
# process itself (for `ip netns exec`, which execs too: the node process).
start() {
  local name="$1"; shift
  "$@" </dev/null >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!"); NAMES+=("$name")
}

pid_of() { local i; for i in "${!NAMES[@]}"; do [ "${NAMES[$i]}" = "$1" ] && { echo "${PIDS[$i]}"; return; }; done; }

# N free loopback TCP ports, all held open while choosing so they are distinct.
free_ports() {
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]); const servers = []; const ports = [];
    const next = () => {
      if (ports.length === n) { console.log(ports.join(" ")); servers.forEach((s) => s.close()); return; }
      const s = net.createServer(); servers.push(s);
      s.listen(0, "127.0.0.1", () => { ports.push(s.address().port); next(); });
    };
    next();' "$1"
}

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "local-ha: timed out after ${secs}s waiting for $what" >&2; return 1; fi
    sleep 0.3
  done
}

# A lab on loopback and Unix sockets: plaintext, said explicitly (production uses mTLS: README "Security").
export PALISADE_INSECURE=1
CLI=(node dist/services/cli/main.js)

read -r -a P <<<"$(free_ports 8)"
ETCD_CLIENT=("${P[0]}" "${P[1]}" "${P[2]}")
ETCD_PEER=("${P[3]}" "${P[4]}" "${P[5]}")
CTL_PORT=("${P[6]}" "${P[7]}")

# --- etcd: three members, one cluster -----------------------------------------
CLUSTER=""
for i in 0 1 2; do CLUSTER+="${CLUSTER:+,}e$((i + 1))=http://127.0.0.1:${ETCD_PEER[$i]}"; done
ENDPOINTS=""
for i in 0 1 2; do ENDPOINTS+="${ENDPOINTS:+,}http://127.0.0.1:${ETCD_CLIENT[$i]}"; done
for i in 0 1 2; do
  n=$((i + 1))
  mkdir -p "$WORK/etcd-$n"
  start "etcd-$n" etcd --name "e$n" --data-dir "$WORK/etcd-$n" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token "palisade-ha-$$" \
    --max-txn-ops 10000 --max-request-bytes 33554432
done
for i in 0 1 2; do
  wait_until 30 "etcd member e$((i + 1))" curl -fsS "http://127.0.0.1:${ETCD_CLIENT[$i]}/health"
done

# --- controllers ---------------------------------------------------------------
for i in 0 1; do
  n=$((i + 1))
  start "controller-$n" node dist/services/controller/main.js \
    --etcd-endpoints "$ENDPOINTS" --listen "127.0.0.1:${CTL_PORT[$i]},unix:$WORK/ctl-$n.sock"
done
for i in 0 1; do
  wait_until 30 "controller $((i + 1))" "${CLI[@]}" --controller "127.0.0.1:${CTL_PORT[$i]}" status
done

# --- hypervisors: one namespace + one driver each ---------------------------------
for n in 1 2; do
  ns="pal-ha-hv$n"
  ip netns add "$ns"
  CREATED_NS+=("$ns")
  ip -n "$ns" link set lo up
  start "driver-hv$n" ip netns exec "$ns" node dist/services/driver/main.js \
    --controller "unix:$WORK/ctl-1.sock,unix:$WORK/ctl-2.sock" --hostname "hv$n"
done

# True when every host named in $@ is connected and in sync according to the
# controller in $CHECK_VIA; with $NOT_SERVED_BY set, also not served by that replica.
hosts_in_sync() {
  "${CLI[@]}" --controller "$CHECK_VIA" status -o json | node -e '
    const want = process.argv.slice(1); const avoid = process.env.NOT_SERVED_BY || "";
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const hosts = JSON.parse(s).hosts;
      const ok = want.every((h) => hosts.some((x) => x.hostname === h && x.connected && x.in_sync &&
        (!avoid || !String(x.controller).endsWith(":" + avoid))));
      process.exit(ok ? 0 : 1);
    });' "$@"
}

CHECK_VIA="127.0.0.1:${CTL_PORT[0]}"
wait_until 60 "drivers hv1 and hv2 in sync" hosts_in_sync hv1 hv2

print_summary() {
  local i
  echo
  echo "Palisade local HA lab (work dir $WORK; logs: $WORK/*.log)"
  echo
  printf '  %-14s %-8s %s\n' PROCESS PID ADDRESS
  for i in 0 1 2; do printf '  %-14s %-8s %s\n' "etcd-e$((i + 1))" "$(pid_of "etcd-$((i + 1))")" "http://127.0.0.1:${ETCD_CLIENT[$i]} (peer ${ETCD_PEER[$i]})"; done
  for i in 0 1; do printf '  %-14s %-8s %s\n' "controller-$((i + 1))" "$(pid_of "controller-$((i + 1))")" "127.0.0.1:${CTL_PORT[$i]}, unix:$WORK/ctl-$((i + 1)).sock"; done
  for n in 1 2; do printf '  %-14s %-8s %s\n' "driver-hv$n" "$(pid_of "driver-hv$n")" "netns pal-ha-hv$n, --hostname hv$n"; done
  echo
  echo "Try it (in another terminal, from $(pwd)):"
  echo "  PALISADE_INSECURE=1 node dist/services/cli/main.js --controller 127.0.0.1:${CTL_PORT[0]} status"
  echo "  PALISADE_INSECURE=1 node dist/services/cli/main.js --controller 127.0.0.1:${CTL_PORT[0]} apply -f deploy/examples/db-user.yaml"
  echo "  ip netns exec pal-ha-hv1 iptables-save | grep pal-"
  echo "Failover by hand:"
  echo "  kill $(pid_of controller-1)    # controller 1: drivers reconnect to controller 2; its host statuses expire with its lease (~15 s)"
  echo "  PALISADE_INSECURE=1 node dist/services/cli/main.js --controller 127.0.0.1:${CTL_PORT[1]} status"
  echo "  kill $(pid_of etcd-1)    # one etcd member: the other two keep quorum; writes and watches continue"
  echo "  ETCDCTL_API=3 etcdctl --endpoints $ENDPOINTS endpoint status -w table"
  echo "  (killing two etcd members loses quorum: writes fail, drivers keep their last rules)"
  echo
}

fail_check() {
  echo "local-ha --check: FAILED: $1" >&2
  exit 1  # the EXIT trap prints the tail of every log
}

if [ "$MODE" = check ]; then
  print_summary
  CTL1="127.0.0.1:${CTL_PORT[0]}" CTL2="127.0.0.1:${CTL_PORT[1]}"
  echo "check: both drivers in sync"
  "${CLI[@]}" --controller "$CTL1" apply -f deploy/examples/db-user.yaml >/dev/null || fail_check "apply through controller 1"
  "${CLI[@]}" --controller "$CTL1" wait --timeout 30 >/dev/null || fail_check "wait through controller 1"
  echo "check: apply + wait through controller 1"

  c1="$(pid_of controller-1)"
  stop_pids TERM "$c1"; wait "$c1" 2>/dev/null || true; forget_pid "$c1"
  CHECK_VIA="$CTL2"
  export NOT_SERVED_BY="$c1"
  wait_until 60 "drivers in sync through controller 2 after controller 1 stopped" hosts_in_sync hv1 hv2 \
    || fail_check "failover to controller 2"
  unset NOT_SERVED_BY
  echo "check: controller 1 (pid $c1) stopped; both drivers in sync through controller 2"

  e1="$(pid_of etcd-1)"
  stop_pids KILL "$e1"; wait "$e1" 2>/dev/null || true; forget_pid "$e1"
  printf 'kind: Profile\nid: ha-check\ntags: [ha-check]\ninbound_rules: []\noutbound_rules:\n  - {action: allow}\n' >"$WORK/ha-check.yaml"
  wait_until 30 "a write through controller 2 with etcd member e1 down" \
    "${CLI[@]}" --controller "$CTL2" apply -f "$WORK/ha-check.yaml" || fail_check "write with one etcd member down"
  "${CLI[@]}" --controller "$CTL2" wait --timeout 30 >/dev/null || fail_check "wait with one etcd member down"
  echo "check: etcd member e1 (pid $e1) killed; write + wait through controller 2 converged"
  echo OK
  exit 0
fi

print_summary
echo "Running. Ctrl-C stops everything and deletes the namespaces."
while :; do sleep 1; done
