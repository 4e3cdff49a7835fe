// palisade-controller, as a library: options -> normalize -> start().
// Stateless: everything it knows comes from etcd; any number of replicas.
import * as grpc from "@grpc/grpc-js";
import { hostname } from "node:os";
import type { Logger } from "pino";
import { CalcGraph, DEFAULT_CALC_CONFIG, type CalcConfig } from "../calc/index.js";
import { createLogger } from "../runtime/logger.js";
import { SERVER_OPTIONS, addStandardServices, bindServer, shutdownServer } from "../runtime/grpc-server.js";
import { PolicyServiceService } from "../gen/palisade/policy/v1/policy.js";
import { StatusServiceService } from "../gen/palisade/status/v1/status.js";
import { DataplaneSyncServiceService } from "../gen/palisade/sync/v1/sync.js";
import { FlowServiceService } from "../gen/palisade/flow/v1/flow.js";
import { profileInboundChain, profileOutboundChain } from "../calc/index.js";
import { FlowStore } from "./flow-store.js";
import { createFlowService } from "./flow-service.js";
import { createFlowMetrics } from "./flow-metrics.js";
import { createEtcdClient } from "./etcd-client.js";
import { createEtcdStore } from "./etcd-store.js";
import { REQUIRED_TXN_OPS } from "./etcd-errors.js";
import { startCompactor, type Compactor } from "./compactor.js";
import { createModelFeed } from "./model-feed.js";
import { createPolicyService } from "./policy-service.js";
import { createStatusService } from "./status-service.js";
import { createStatusStore } from "./status-store.js";
import { createStreamAdmission, type AdmissionOptions } from "./stream-admission.js";
import { createSyncService } from "./sync-service.js";
import { SyncHub } from "./sync-hub.js";
import { createControllerMetrics } from "./metrics.js";
import { FLOW_ACCESS, POLICY_ACCESS, STATUS_ACCESS, SYNC_ACCESS, guardService } from "./authz.js";
import { serverCredentials, type Role, type TlsMaterial } from "../runtime/tls.js";
import { startMetricsServer } from "../runtime/metrics-server.js";

export interface ControllerOptions {
  etcdEndpoints: string[];
  /** HOST:PORT or unix:/path, comma-separated; port 0 picks a free port (see Controller.port). */
  listen: string;
  /** etcd key prefix; default /palisade/v1. */
  etcdPrefix?: string;
  logger?: Logger;
  /** Lease TTL of the statuses this replica writes; default 15 s. */
  statusTtlSeconds?: number;
  replicaId?: string;
  workloadToHost?: "drop" | "accept";
  /** Grace period for streams on shutdown; default 5 s. */
  shutdownGraceMs?: number;
  /** How long the start retries reading the model from etcd before it fails; default 15 s. */
  startTimeoutMs?: number;
  /** HOST:PORT for /metrics, /healthz, /readyz; none when empty. */
  metricsListen?: string;
  /** Empty batch to idle streams every so often (drivers' liveness check); default 10 s. */
  heartbeatMs?: number;
  /**
   * Mutual TLS for every gRPC listener: clients need a certificate from `ca`
   * carrying a role (runtime/tls.ts); drivers only get their own host. Absent:
   * plaintext, no authorisation (logged as a warning).
   */
  tls?: TlsMaterial;
  /** TLS towards etcd (https endpoints): CA, and a client certificate when etcd requires one. */
  etcdTls?: EtcdTls;
  /** Status writes: coalescing delay and minimum interval between flushes (DESIGN §9.3); defaults 20 / 50 ms (longer with many hosts). */
  statusFlushDelayMs?: number;
  statusMinIntervalMs?: number;
  /** Limits on sync stream admission (hello rate overall and per host, streams without hello). */
  admission?: AdmissionOptions;
  /**
   * Compaction of etcd's history by one elected replica (compactor.ts):
   * retention 0 = off (etcd's own --auto-compaction-* does it). Default 5 min,
   * every minute.
   */
  etcdCompaction?: { retentionMs: number; intervalMs?: number; now?: () => number; leaseTtlSeconds?: number };
}

export interface EtcdTls {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface Controller {
  readonly port: number;
  /** Port of the metrics/health HTTP server (0 when not enabled). */
  readonly metricsPort: number;
  readonly graph: CalcGraph;
  readonly hub: SyncHub;
  /** The etcd history compactor (absent when retention is 0). */
  readonly compactor?: Compactor;
  stop(): Promise<void>;
}

type NormalizedOptions = Required<Omit<ControllerOptions, "tls" | "etcdTls">> & Pick<ControllerOptions, "tls" | "etcdTls">;

/** Endpoint statuses of endpoints that left a host's model are dropped this often. */
const STATUS_PRUNE_MS = 10_000;
export const DEFAULT_COMPACTION_RETENTION_MS = 5 * 60_000;

export function normalizeControllerOptions(o: ControllerOptions): NormalizedOptions {
  if (!o.etcdEndpoints.length) throw new Error("at least one etcd endpoint is required");
  if (o.etcdTls && !o.etcdTls.cert !== !o.etcdTls.key) throw new Error("etcd TLS: a client certificate needs its key, and a key its certificate");
  const scheme = o.etcdTls ? "https" : "http";
  return {
    etcdEndpoints: o.etcdEndpoints.map((e) => (e.includes("://") ? e : `${scheme}://${e}`)),
    listen: o.listen,
    etcdPrefix: o.etcdPrefix ?? "/palisade/v1",
    logger: o.logger ?? createLogger({ name: "palisade-controller" }),
    statusTtlSeconds: o.statusTtlSeconds ?? 15,
    replicaId: o.replicaId ?? `${hostname()}:${process.pid}`,
    workloadToHost: o.workloadToHost ?? "drop",
    shutdownGraceMs: o.shutdownGraceMs ?? 5_000,
    startTimeoutMs: o.startTimeoutMs ?? 15_000,
    metricsListen: o.metricsListen ?? "",
    heartbeatMs: o.heartbeatMs ?? 10_000,
    tls: o.tls,
    etcdTls: o.etcdTls,
    statusFlushDelayMs: o.statusFlushDelayMs ?? 20,
    statusMinIntervalMs: o.statusMinIntervalMs ?? 50,
    admission: o.admission ?? {},
    etcdCompaction: o.etcdCompaction ?? { retentionMs: DEFAULT_COMPACTION_RETENTION_MS },
  };
}

export async function startController(options: ControllerOptions): Promise<Controller> {
  const o = normalizeControllerOptions(options);
  const logger = o.logger;
  if (o.etcdTls && o.etcdEndpoints.some((e) => e.startsWith("http://"))) throw new Error("etcd TLS is configured but an etcd endpoint is http://");
  // --- etcd client (wt-etcd): fault-handling policy lives in etcd-client.ts ---
  const client = createEtcdClient({ endpoints: o.etcdEndpoints, tls: o.etcdTls }, "model");
  // --- end etcd client ---
  if (!o.tls) logger.warn("gRPC is plaintext (--insecure): any client can change policy and claim any host; use --tls-cert/--tls-key/--tls-ca in production");
  const metrics = createControllerMetrics();
  // --- etcd store wiring (wt-etcd): errors by class; model revision while the key is absent ---
  const store = createEtcdStore({
    client, prefix: o.etcdPrefix, logger: logger.child({ component: "store" }),
    onEtcdError: (cls) => metrics.etcdErrors.inc({ class: cls }),
    fallbackModelRevision: () => feed.revision,
  });
  // --- end etcd store wiring ---
  const hub = new SyncHub(logger.child({ component: "sync" }), o.heartbeatMs);
  // Flow report points are always rendered (DESIGN §6.12): whether a host
  // reports allowed flows too, and how fast, is its driver's business.
  const cfg: CalcConfig = { ...DEFAULT_CALC_CONFIG, workloadToHost: o.workloadToHost, flowLogs: true };
  const graph = new CalcGraph(hub, cfg, { listen: "subscribed" });
  const feed = createModelFeed({ store, graph, hub, logger: logger.child({ component: "feed" }), observeCalc: (s) => metrics.calcDuration.observe(s) });
  // Status traffic has its own etcd client (its own connection and fault
  // policy): a status backlog cannot trip the model API's breaker or queue.
  const statusClient = createEtcdClient({ endpoints: o.etcdEndpoints, tls: o.etcdTls }, "status");
  const status = createStatusStore({
    client: statusClient, keys: store.keys, logger: logger.child({ component: "status" }), ttlSeconds: o.statusTtlSeconds, replicaId: o.replicaId,
    flushDelayMs: o.statusFlushDelayMs, minIntervalMs: o.statusMinIntervalMs,
  });

  try {
    // Reads first: a replica serves the model and streams even while etcd
    // refuses writes (space alarm); the status lease follows in the background.
    await feed.start(o.startTimeoutMs);
    status.start();
  } catch (err) {
    // Nothing may linger after a failed start (the etcd client would keep
    // retrying in the background of whoever called us).
    await feed.stop().catch(() => undefined);
    await status.close().catch(() => undefined);
    hub.close();
    store.close();
    client.close();
    statusClient.close();
    throw new Error(`cannot start: etcd at ${o.etcdEndpoints.join(",")}: ${(err as Error).message}`);
  }

  // --- etcd hygiene (wt-etcd): neither of these writes or blocks the start ---
  const etcdLog = logger.child({ component: "etcd" });
  void store.detectTxnOpsLimit().then(
    ({ limit, sufficient }) => {
      metrics.etcdTxnOpsLimit.set(limit);
      status.limitTxnOps(limit);
      if (!sufficient) {
        etcdLog.warn({ maxTxnOps: limit, needed: REQUIRED_TXN_OPS },
          `etcd accepts at most ${limit} operations per transaction: applies of more than ${Math.max(0, limit - 1)} documents will be refused; run etcd with --max-txn-ops ${REQUIRED_TXN_OPS} or more`);
      }
    },
    (err: Error) => etcdLog.warn({ err: err.message }, "cannot detect etcd's --max-txn-ops; large applies may be refused by etcd"),
  );
  const compactor = o.etcdCompaction.retentionMs > 0
    ? startCompactor({
      client, store, electionPrefix: store.keys.compactor, logger: etcdLog, replicaId: o.replicaId,
      retentionMs: o.etcdCompaction.retentionMs, intervalMs: o.etcdCompaction.intervalMs, now: o.etcdCompaction.now,
      leaseTtlSeconds: o.etcdCompaction.leaseTtlSeconds,
      onCompacted: (rev) => { metrics.etcdCompactedRevision.set(rev); metrics.etcdCompactions.inc(); },
    })
    : undefined;
  // --- end etcd hygiene ---

  // Flow records: memory only, bounded (flow-store.ts). Profile chains are
  // resolved against the graph; the chain → profile index is rebuilt when
  // the model's revision moved.
  let chainIndex = new Map<string, string>();
  let chainIndexRevision = -1;
  const flows = new FlowStore({
    profileOfChain(chain) {
      if (chainIndexRevision !== graph.currentRevision) {
        chainIndex = new Map();
        for (const id of graph.profileIds()) {
          chainIndex.set(profileInboundChain(id), id);
          chainIndex.set(profileOutboundChain(id), id);
        }
        chainIndexRevision = graph.currentRevision;
      }
      return chainIndex.get(chain);
    },
    profileIdsOf: (key) => graph.getEndpoint(key)?.profileIds,
    networkOf: (key) => graph.getEndpoint(key)?.network,
  }, o.replicaId, {
    onStored: (host, obs) => { if (obs.verdict === "deny") flowMetrics.denied.inc({ host, decision: obs.decision }, obs.packets); },
    onDropped: (reason, n) => flowMetrics.dropped.inc({ reason }, n),
    onDriverDropped: (host, reason, n) => flowMetrics.driverDropped.inc({ host, reason }, n),
  });
  const flowMetrics = createFlowMetrics(metrics.registry, () => flows.size, () => flows.watcherCount);

  const server = new grpc.Server(SERVER_OPTIONS);
  // With mTLS every service is wrapped by the access table (authz.ts); in
  // plaintext there is no identity to check.
  const authLogger = logger.child({ component: "authz" });
  const onDenied = (method: string) => metrics.permissionDenied.inc({ method });
  const guard = <T extends object>(service: string, impl: T, access: Record<keyof T, readonly Role[]>): T =>
    (o.tls ? guardService(service, impl, access, authLogger, onDenied) : impl);
  server.addService(PolicyServiceService, guard("palisade.policy.v1.PolicyService", createPolicyService({
    store, logger: logger.child({ component: "policy" }),
    model: () => ({ view: graph.modelView(), revision: feed.revision }),
    observe: (method, code) => metrics.apiRequests.inc({ method, code }),
  }), POLICY_ACCESS));
  server.addService(DataplaneSyncServiceService, guard("palisade.sync.v1.DataplaneSyncService", createSyncService({
    graph, hub, status, logger: logger.child({ component: "sync" }), replicaId: o.replicaId, onReset: () => metrics.streamResets.inc(),
    requireHostIdentity: !!o.tls, onDenied, admission: createStreamAdmission(o.admission),
    onRefused: (reason) => metrics.syncRefused.inc({ reason }),
    onFlowReport: (host, report) => flows.ingest(host, report),
  }), SYNC_ACCESS));
  server.addService(FlowServiceService, guard("palisade.flow.v1.FlowService", createFlowService({
    store: flows, logger: logger.child({ component: "flows" }), onWatchDropped: (n) => flowMetrics.watchDropped.inc(n),
  }), FLOW_ACCESS));
  const statusService = createStatusService({ client: statusClient, store, status, logger: logger.child({ component: "status" }) });
  const { close: closeStatusService, ...statusHandlers } = statusService;
  server.addService(StatusServiceService, guard("palisade.status.v1.StatusService", statusHandlers, STATUS_ACCESS));
  // Statuses of endpoints that left a host (deleted, moved) go with them.
  const pruneTimer = setInterval(() => {
    for (const host of hub.hosts()) {
      for (const key of status.endpointKeys(host)) if (graph.getEndpoint(key)?.host !== host) status.removeEndpoint(key);
    }
  }, STATUS_PRUNE_MS);
  pruneTimer.unref();
  const health = addStandardServices(server, ["palisade.policy.v1.PolicyService", "palisade.sync.v1.DataplaneSyncService", "palisade.status.v1.StatusService", "palisade.flow.v1.FlowService"]);
  let port = 0;
  try {
    for (const addr of o.listen.split(",").map((a) => a.trim()).filter(Boolean)) {
      const p = await bindServer(server, addr, serverCredentials(o.tls));
      if (!addr.startsWith("unix:") && port === 0) port = p;
    }
  } catch (err) {
    // As for a failed etcd start: nothing may linger (ports already bound,
    // the model watch, the etcd client).
    server.forceShutdown();
    clearInterval(pruneTimer);
    await closeStatusService().catch(() => undefined);
    await compactor?.stop().catch(() => undefined);
    await feed.stop().catch(() => undefined);
    hub.close();
    await status.close().catch(() => undefined);
    statusClient.close();
    store.close();
    client.close();
    throw new Error(`cannot start: ${(err as Error).message}`);
  }
  logger.info({ listen: o.listen, port, etcd: o.etcdEndpoints, prefix: o.etcdPrefix, replica: o.replicaId, tls: !!o.tls }, "controller serving");

  // Gauges are read at scrape time from the live objects.
  Object.assign(metrics.sources, {
    connectedHosts: () => hub.connectedHosts,
    modelRevision: () => feed.revision,
    queueDepths: () => hub.queueDepths(),
    etcdRevision: async () => {
      const res = await client.kv.range({ key: Buffer.from(store.keys.revision) }).catch(() => undefined);
      return res ? Number(res.header.revision) : undefined;
    },
    // Lag against the model (the revision key's mod revision), not etcd's
    // global revision, which status writes advance too.
    modelWatchLag: async () => {
      const latest = await store.modelRevision().catch(() => undefined);
      return latest === undefined ? undefined : Math.max(0, latest - feed.revision);
    },
    statusStats: () => status.stats,
  });
  const http = o.metricsListen
    ? await startMetricsServer({
      listen: o.metricsListen, registry: metrics.registry, logger,
      ready: async () => {
        if (!feed.ready) return { ok: false, detail: "model not loaded yet" };
        const reachable = await Promise.race([
          store.modelRevision().then(() => true, () => false),
          new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
        ]);
        return reachable ? { ok: true, detail: `ready: model revision ${feed.revision}` } : { ok: false, detail: "etcd unreachable" };
      },
    })
    : undefined;

  let stopping: Promise<void> | undefined;
  return {
    port,
    metricsPort: http?.port ?? 0,
    graph,
    hub,
    compactor,
    stop() {
      stopping ??= (async () => {
        logger.info("controller stopping: draining streams");
        health.setStatus("", "NOT_SERVING");
        clearInterval(pruneTimer);
        await shutdownServer(server, o.shutdownGraceMs);
        await closeStatusService();
        await http?.close();
        await compactor?.stop();
        await feed.stop();
        hub.close();
        await status.close();
        statusClient.close();
        store.close();
        client.close();
        logger.info("controller stopped");
      })();
      return stopping;
    },
  };
}

