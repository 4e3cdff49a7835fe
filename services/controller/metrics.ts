// Controller metrics (names are part of the operator contract: the Grafana
// dashboard in deploy/grafana and deploy/CONFIGURATION.md use them).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { StatusStoreStats } from "./status-store.js";

/** Live values read at scrape time; bound once the controller's parts exist. */
export interface ControllerMetricSources {
  connectedHosts: () => number;
  modelRevision: () => number;
  queueDepths: () => Map<string, number>;
  etcdRevision: () => Promise<number | undefined>;
  modelWatchLag: () => Promise<number | undefined>;
  statusStats: () => StatusStoreStats;
}

export function createControllerMetrics() {
  const registry = new Registry();
  const src: ControllerMetricSources = {
    connectedHosts: () => 0, modelRevision: () => 0, queueDepths: () => new Map(), etcdRevision: async () => undefined,
    modelWatchLag: async () => undefined,
    statusStats: () => ({ flushes: 0, transactions: 0, keysWritten: 0, keysDeleted: 0, failures: 0, pendingKeys: 0, leased: false }),
  };
  /** A counter mirroring a monotonically growing number kept elsewhere. */
  const mirrored = (name: string, help: string, read: () => number) => {
    let last = 0;
    return new Counter({
      name, help, registers: [registry],
      collect() {
        const v = read();
        if (v > last) this.inc(v - last);
        last = Math.max(last, v);
      },
    });
  };
  collectDefaultMetrics({ register: registry, prefix: "palisade_controller_process_" });
  return {
    registry,
    sources: src,
    connectedHosts: new Gauge({
      name: "palisade_controller_connected_hosts", help: "Hosts with a sync stream to this replica", registers: [registry],
      collect() { this.set(src.connectedHosts()); },
    }),
    queueDepth: new Gauge({
      name: "palisade_controller_stream_queue_depth", help: "Coalesced keys waiting in a host stream's outbox", labelNames: ["host"], registers: [registry],
      collect() {
        this.reset();
        for (const [host, depth] of src.queueDepths()) this.set({ host }, depth);
      },
    }),
    streamResets: new Counter({ name: "palisade_controller_stream_resets_total", help: "Streams reset to a fresh snapshot because the driver fell too far behind", registers: [registry] }),
    calcDuration: new Histogram({
      name: "palisade_controller_calc_duration_seconds", help: "Calculation of one etcd revision (graph update and flush)",
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [registry],
    }),
    modelRevision: new Gauge({
      name: "palisade_controller_model_revision", help: "etcd revision of the model this replica has computed", registers: [registry],
      collect() { this.set(src.modelRevision()); },
    }),
    etcdRevision: new Gauge({
      name: "palisade_controller_etcd_revision", help: "Current etcd revision (advanced by status writes too: not a measure of lag)", registers: [registry],
      async collect() {
        const r = await src.etcdRevision();
        if (r !== undefined) this.set(r);
      },
    }),
    modelWatchLag: new Gauge({
      name: "palisade_controller_model_watch_lag_revisions",
      help: "Model revision in etcd minus the model revision this replica has computed (0 when caught up)", registers: [registry],
      async collect() {
        const r = await src.modelWatchLag();
        if (r !== undefined) this.set(r);
      },
    }),
    statusFlushes: mirrored("palisade_controller_status_flushes_total", "Status flushes to etcd (each one or more transactions)", () => src.statusStats().flushes),
    statusTransactions: mirrored("palisade_controller_status_transactions_total", "etcd transactions written by the status path (each is one etcd revision)", () => src.statusStats().transactions),
    statusKeysWritten: mirrored("palisade_controller_status_keys_written_total", "Status keys put into etcd", () => src.statusStats().keysWritten),
    statusWriteFailures: mirrored("palisade_controller_status_write_failures_total", "Failed status flushes (retried with backoff)", () => src.statusStats().failures),
    statusPending: new Gauge({
      name: "palisade_controller_status_pending_keys", help: "Status keys changed but not yet written to etcd", registers: [registry],
      collect() { this.set(src.statusStats().pendingKeys); },
    }),
    statusLeased: new Gauge({
      name: "palisade_controller_status_lease_held", help: "1 when this replica holds its status lease (0: statuses kept in memory until etcd accepts writes)", registers: [registry],
      collect() { this.set(src.statusStats().leased ? 1 : 0); },
    }),
    syncRefused: new Counter({
      name: "palisade_controller_sync_refused_total",
      help: "Sync streams or reports refused: rate, host-rate, pending (admission), superseded (a newer stream of the host), endpoint-unknown, endpoint-cap, driver-features (a driver lacking a feature the controller renders for)",
      labelNames: ["reason"], registers: [registry],
    }),
    permissionDenied: new Counter({ name: "palisade_controller_permission_denied_total", help: "Calls refused by mTLS authorisation (wrong role, or a host certificate for another host)", labelNames: ["method"], registers: [registry] }),
    etcdErrors: new Counter({ name: "palisade_controller_etcd_errors_total", help: "etcd failures seen by API requests, by class: unavailable, nospace, too-many-ops, request-too-large", labelNames: ["class"], registers: [registry] }),
    etcdCompactedRevision: new Gauge({ name: "palisade_controller_etcd_compacted_revision", help: "Revision this replica last compacted etcd's history to (0: not the compaction leader yet)", registers: [registry] }),
    etcdCompactions: new Counter({ name: "palisade_controller_etcd_compactions_total", help: "Compactions of etcd's history done by this replica", registers: [registry] }),
    etcdTxnOpsLimit: new Gauge({ name: "palisade_controller_etcd_max_txn_ops", help: "etcd's --max-txn-ops as detected at start, capped at what Palisade needs (documents per batch + 1)", registers: [registry] }),
    apiRequests: new Counter({ name: "palisade_controller_api_requests_total", help: "API requests by method and gRPC status code", labelNames: ["method", "code"], registers: [registry] }),
  };
}

export type ControllerMetrics = ReturnType<typeof createControllerMetrics>;
