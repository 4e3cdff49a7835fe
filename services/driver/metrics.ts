// Driver metrics (names are part of the operator contract, see
// deploy/CONFIGURATION.md and the Grafana dashboard).
import { createRegistry } from "../runtime/metrics-server.js";
import { Counter, Gauge, Histogram } from "prom-client";

export function createDriverMetrics() {
  const registry = createRegistry("palisade_driver_");
  return {
    registry,
    applyDuration: new Histogram({
      name: "palisade_driver_apply_duration_seconds", help: "Duration of one apply by stage (ipset, ipv4, ipv6, conntrack, total)", labelNames: ["stage"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry],
    }),
    rulesProgrammed: new Gauge({ name: "palisade_driver_rules_programmed", help: "Rules in Palisade's chains", labelNames: ["family"], registers: [registry] }),
    ipsetsProgrammed: new Gauge({ name: "palisade_driver_ipsets_programmed", help: "Palisade ipsets", registers: [registry] }),
    driftRepairs: new Counter({ name: "palisade_driver_drift_repairs_total", help: "Read-backs that found the kernel changed behind our back (repaired)", registers: [registry] }),
    applyFailures: new Counter({ name: "palisade_driver_apply_failures_total", help: "Failed applies (retried with backoff)", registers: [registry] }),
    epochAdvances: new Counter({
      name: "palisade_driver_policy_epoch_advances_total",
      help: "Applies that may have revoked an admitted flow: established connections of the family are judged again by the current policy (DESIGN §6.14)",
      labelNames: ["family"], registers: [registry],
    }),
    connectionsEnded: new Counter({
      name: "palisade_driver_connections_ended_total",
      help: "Open connections a revision revoked: denied when judged again under a new policy epoch, counted once each (exact: the kernel's counter, not the flow-report rate limit; DESIGN §6.14)",
      labelNames: ["family"], registers: [registry],
    }),
    conntrackDeleted: new Counter({ name: "palisade_driver_conntrack_deleted_total", help: "Conntrack entries deleted because their address left an endpoint of this host (no inheritance)", registers: [registry] }),
    conntrackDeleteFailures: new Counter({ name: "palisade_driver_conntrack_delete_failures_total", help: "conntrack -D runs that failed (the connections stay judged by the current policy only)", registers: [registry] }),
    ipsetSessionStarts: new Counter({
      name: "palisade_driver_ipset_session_starts_total",
      help: "Long-lived ipset sessions started (the first set batch, and after each failure once an apply succeeded; DESIGN §6.7)",
      registers: [registry],
    }),
    ipsetSessionFailures: new Counter({
      name: "palisade_driver_ipset_session_failures_total",
      help: "ipset session failures by reason (error: a line refused; ended: the process died; timeout: no answer; output: unexpected output; start: the process could not be started). The apply failed and was retried from a read-back, or (ended between applies) went through ipset restore",
      labelNames: ["reason"], registers: [registry],
    }),
    ipsetSessionDisabled: new Counter({
      name: "palisade_driver_ipset_session_disabled_total",
      help: "Times the ipset session circuit breaker turned sessions off (a session failed on its first batch, or 3 failures in a row), by the last failure's reason; off 1 min, doubling to 1 h (DESIGN §6.7)",
      labelNames: ["reason"], registers: [registry],
    }),
    appliedRevision: new Gauge({ name: "palisade_driver_applied_revision", help: "Model revision last applied", registers: [registry] }),
    rulesetMonitorUp: new Gauge({
      name: "palisade_driver_ruleset_monitor_up",
      help: "1 while the nft ruleset monitor runs (tampering repaired within about a second); 0 = periodic read-back only (legacy backend, nft missing, or restarting)",
      registers: [registry],
    }),
    inSync: new Gauge({ name: "palisade_driver_in_sync", help: "1 once the first complete state is applied", registers: [registry] }),
    hostCheckFailing: new Gauge({
      name: "palisade_driver_host_check_failing",
      help: "1 while workload traffic bypasses Palisade on this host (bridged taps without bridge-nf-call-iptables; the reason is in the host's last_error)",
      registers: [registry],
    }),
  };
}

export type DriverMetrics = ReturnType<typeof createDriverMetrics>;
