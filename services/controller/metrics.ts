// Controller metrics (names are part of the operator contract: the Grafana
// dashboard in deploy/grafana and deploy/CONFIGURATION.md use them).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Live values read at scrape time; bound once the controller's parts exist. */
export interface ControllerMetricSources {
  connectedHosts: () => number;
  modelRevision: () => number;
  queueDepths: () => Map<string, number>;
  etcdRevision: () => Promise<number | undefined>;
}

export function createControllerMetrics() {
  const registry = new Registry();
  const src: ControllerMetricSources = {
    connectedHosts: () => 0, modelRevision: () => 0, queueDepths: () => new Map(), etcdRevision: async () => undefined,
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
      name: "palisade_controller_etcd_revision", help: "Current etcd revision (watch lag = etcd_revision - model_revision)", registers: [registry],
      async collect() {
        const r = await src.etcdRevision();
        if (r !== undefined) this.set(r);
      },
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
