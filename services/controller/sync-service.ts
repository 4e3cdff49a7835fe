// DataplaneSyncService: one bidirectional stream per host. The driver says
// hello; we answer with a snapshot, an in-sync marker, then deltas (through
// the SyncHub). What the driver reports back becomes status in etcd.
import { decidedStatus } from "../runtime/grpc-server.js";
import { ApiError, type ApiErrorCode } from "../contract/errors.js";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { CalcGraph } from "../calc/index.js";
import type { DataplaneSyncServiceServer, FlowReport, SyncRequest, SyncResponse } from "../gen/palisade/sync/v1/sync.js";
import { InterfaceState } from "../gen/palisade/sync/v1/sync.js";
import { EndpointState, type HostStatus } from "../gen/palisade/status/v1/status.js";
import { ID_RE, LIMITS } from "../model/index.js";
import { peerIdentity } from "../runtime/tls.js";
import type { StatusStore } from "./status-store.js";
import type { StreamAdmission } from "./stream-admission.js";
import { HostStream, type SyncHub } from "./sync-hub.js";
import { missingFeatures, tooOldMessage } from "../contract/driver-features.js";
import { createRefusedHosts } from "./refused-hosts.js";

const HELLO_TIMEOUT_MS = 10_000;
/** Streams one host may hold at once: a quick reconnect overlaps its old stream; the newest wins. */
export const MAX_STREAMS_PER_HOST = 2;
/** Endpoint statuses one host may hold (an endpoint must also be the host's in the model). */
export const MAX_ENDPOINT_STATUSES_PER_HOST = 10_000;

/** Why the sync service refused something; counted in metrics (bounded label values). */
export type SyncRefusal = "rate" | "host-rate" | "pending" | "superseded" | "endpoint-unknown" | "endpoint-cap" | "driver-features";

const ENDPOINT_STATE: Record<InterfaceState, EndpointState> = {
  [InterfaceState.INTERFACE_STATE_UP]: EndpointState.ENDPOINT_STATE_UP,
  [InterfaceState.INTERFACE_STATE_DOWN]: EndpointState.ENDPOINT_STATE_DOWN,
  [InterfaceState.INTERFACE_STATE_ERROR]: EndpointState.ENDPOINT_STATE_ERROR,
  [InterfaceState.INTERFACE_STATE_UNSPECIFIED]: EndpointState.ENDPOINT_STATE_UNSPECIFIED,
  [InterfaceState.UNRECOGNIZED]: EndpointState.ENDPOINT_STATE_UNSPECIFIED,
};

/**
 * Ends a server stream with a status the client sees. (destroy() would reset
 * the HTTP/2 stream: the driver would learn nothing and wait for its watchdog.)
 */
function endWithStatus(call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>, code: grpc.status, details: string): void {
  call.emit("error", decidedStatus(new ApiError(grpc.status[code] as ApiErrorCode, details)));
}

export function createSyncService(opts: {
  graph: CalcGraph; hub: SyncHub; status: StatusStore; logger: Logger; replicaId: string; onReset?: () => void;
  admission: StreamAdmission;
  /** mTLS on: the client certificate must name the host said in the hello (host identity). */
  requireHostIdentity?: boolean;
  onDenied?: (method: string, reason: string) => void;
  onRefused?: (reason: SyncRefusal) => void;
  /** Flow reports of a host's driver (DESIGN §5.9): handed on as they come; the receiver bounds them. */
  onFlowReport?: (host: string, report: FlowReport) => void;
}): DataplaneSyncServiceServer {
  const { graph, hub, status, replicaId, admission } = opts;
  const refused = (reason: SyncRefusal) => opts.onRefused?.(reason);
  const refusedHosts = createRefusedHosts({
    setHost: (h) => status.setHost(h), removeHost: (h) => status.removeHost(h), served: (h) => hub.hasHost(h), replicaId,
  });
  /**
   * Open streams per host, oldest first (to supersede the oldest). `restore`
   * puts the stream's own view of the host (in sync, applied revision,
   * versions, last error, apply duration) back into status: called when a
   * newer stream of the same host ends, so the host's status is the
   * remaining stream's again, not the departed one's (DESIGN §9.3).
   */
  const open = new Map<string, { stream: HostStream; end: (details: string) => void; restore: () => void }[]>();
  const newest = (s: HostStream) => open.get(s.host)?.at(-1)?.stream === s;
  return {
    sync(call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>) {
      let stream: HostStream | undefined;
      let host: HostStatus | undefined;
      let logger = opts.logger;
      let ended = false;
      let releasePending: (() => void) | undefined;
      const admitted = admission.open();
      if (typeof admitted !== "function") {
        refused(admitted.reason);
        endWithStatus(call, grpc.status.UNAVAILABLE, admitted.message);
        return;
      }
      releasePending = admitted;
      const helloTimer = setTimeout(() => {
        if (!stream) endWithStatus(call, grpc.status.DEADLINE_EXCEEDED, "no hello within 10s");
      }, HELLO_TIMEOUT_MS);

      // Only the host's newest stream speaks for the host: an older one
      // (a quick reconnect's old stream) gets its turn back when the newer
      // one ends (its `restore`). At the hello, `stream` is not yet set: the
      // stream saying hello is about to be the newest.
      const publish = () => {
        if (!host || (stream && !newest(stream))) return;
        status.setHost({ ...host, updatedUnixMs: Date.now() });
      };
      const restore = () => {
        publish();
        if (host?.inSync && stream && newest(stream)) status.setApplied(host.hostname, host.appliedRevision);
      };
      const finish = () => {
        if (ended) return;
        ended = true;
        clearTimeout(helloTimer);
        releasePending?.();
        if (stream) {
          const wasNewest = newest(stream);
          const list = open.get(stream.host)?.filter((e) => e.stream !== stream) ?? [];
          if (list.length) open.set(stream.host, list);
          else open.delete(stream.host);
          hub.detach(stream);
          // A newer stream of the same host (a quick reconnect) keeps its status.
          if (!hub.hasHost(stream.host)) {
            status.removeHost(stream.host);
            graph.unsubscribe(stream.host);
          } else if (wasNewest) {
            // The newest stream left, an older one remains: the host's status
            // is the remaining stream's again (it may be in sync and
            // acknowledging while the departed one never was).
            list.at(-1)?.restore();
          }
          logger.info("driver disconnected");
        }
      };

      call.on("data", (req: SyncRequest) => {
        const m = req.message;
        if (!m) return;
        if (m.$case === "hello") {
          if (stream) return;
          const name = m.value.hostname;
          if (!ID_RE.test(name) || name.length > LIMITS.hostLength) {
            endWithStatus(call, grpc.status.INVALID_ARGUMENT, "invalid hostname in hello");
            return;
          }
          if (opts.requireHostIdentity) {
            // Checked before anything is created for the host: a driver holding
            // another host's certificate gets no policy and writes no status.
            const who = peerIdentity(call);
            const reason = typeof who === "string" ? who
              : who.role !== "host" ? `role '${who.role}' (${who.name}) may not sync a host`
              : who.name !== name ? `certificate is for host '${who.name}', not '${name}'` : undefined;
            if (reason !== undefined) {
              opts.logger.warn({ host: name, reason }, "sync refused");
              opts.onDenied?.("palisade.sync.v1.DataplaneSyncService/Sync", reason);
              endWithStatus(call, grpc.status.PERMISSION_DENIED, `permission denied: ${reason}`);
              return;
            }
          }
          // Admission first: a refusal for any reason spends the host's and
          // the replica's hello tokens, so a client repeating hellos that will
          // be refused costs no more than one repeating good ones.
          const refusal = admission.hello(name);
          if (refusal) {
            refused(refusal.reason);
            endWithStatus(call, grpc.status.UNAVAILABLE, refusal.message);
            return;
          }
          // A driver lacking a feature this controller renders for (DESIGN
          // §6.2) gets nothing: no view, no stream, no update. Its host keeps
          // a record saying why (refused-hosts.ts), so status and `wait` do
          // not take a frozen host for an absent one.
          const missing = missingFeatures(m.value.features);
          if (missing.length) {
            const details = tooOldMessage(missing);
            refused("driver-features");
            const record = refusedHosts.refused(name, m.value, details);
            // Logged once per host and message: the driver retries with backoff.
            if (record !== "same") {
              // What the hello announced is the client's: bounded before it is logged.
              const announced = m.value.features.slice(0, 8).map((f) => f.slice(0, 40));
              opts.logger.warn({ host: name, driverVersion: m.value.driverVersion.slice(0, 100), announced, missing }, "sync refused: driver too old");
            }
            endWithStatus(call, grpc.status.FAILED_PRECONDITION, details);
            return;
          }
          refusedHosts.accepted(name);
          clearTimeout(helloTimer);
          releasePending?.();
          releasePending = undefined;
          logger = opts.logger.child({ host: name });
          host = {
            hostname: name, connected: true, inSync: false, appliedRevision: 0, lastError: "", lastApplyMs: 0,
            driverVersion: m.value.driverVersion, iptablesBackend: m.value.iptablesBackend, controller: replicaId,
            updatedUnixMs: Date.now(), connectedUnixMs: Date.now(),
          };
          publish();
          // Honour the hello's capabilities: a driver without IPv6 gets nothing of it.
          stream = new HostStream(name, call, graph, logger, opts.onReset, undefined, new Set(m.value.ipv6 ? [4, 6] : [4]));
          const streams = open.get(name) ?? [];
          streams.push({ stream, end: (details) => endWithStatus(call, grpc.status.ABORTED, details), restore });
          // Progress the stream can infer (revisions that brought this host
          // nothing) counts like an acknowledgement — from the host's newest
          // stream only: an older one may be half-dead while the driver
          // applies a new snapshot on the newer.
          const s = stream;
          stream.onProgress = (revision) => {
            if (!host || !host.inSync || host.lastError || !newest(s) || revision <= host.appliedRevision) return;
            host.appliedRevision = revision;
            status.setApplied(host.hostname, revision);
          };
          open.set(name, streams);
          graph.subscribe(name);
          hub.attach(stream);
          // Attached first: the superseded stream's end then sees the host
          // still connected and keeps its status and host view.
          while (streams.length > MAX_STREAMS_PER_HOST) {
            refused("superseded");
            streams.shift()!.end("superseded by a newer stream from the same host");
          }
          logger.info({ driverVersion: m.value.driverVersion, backend: m.value.iptablesBackend }, "driver connected; snapshot sent");
          return;
        }
        if (!stream || !host) return; // everything else needs a hello first
        if (m.$case === "applied") {
          // Every host acknowledges every revision: this path stays cheap, and
          // only what an operator sees change reaches etcd (DESIGN §9.3).
          const before = { inSync: host.inSync, lastError: host.lastError, lastApplyMs: host.lastApplyMs };
          host.lastApplyMs = m.value.durationMs;
          const applied = stream.acknowledged(m.value.revision, m.value.ok);
          if (m.value.ok) {
            host.inSync = true;
            host.appliedRevision = Math.max(host.appliedRevision, applied ?? m.value.revision);
            host.lastError = "";
            if (newest(stream)) status.setApplied(host.hostname, host.appliedRevision);
          } else {
            host.lastError = m.value.error.slice(0, 2000);
            if (host.lastError !== before.lastError) logger.warn({ revision: m.value.revision, error: host.lastError }, "driver failed to apply");
          }
          // A new apply duration alone is kept by the store and written
          // with the record's next change or a rate-limited refresh (§9.3).
          if (host.inSync !== before.inSync || host.lastError !== before.lastError || host.lastApplyMs !== before.lastApplyMs) publish();
        } else if (m.$case === "flowReport") {
          // ---- flow reports (DESIGN §5.9): not status, never etcd; only
          // after the hello, so a report is always attributed to the host
          // whose identity the hello (and, under mTLS, its certificate) proved.
          opts.onFlowReport?.(host.hostname, m.value);
        } else if (m.$case === "endpointStatus") {
          const key = m.value.endpointKey;
          // Only endpoints this host has in the model (what the controller sent
          // it), at most MAX_ENDPOINT_STATUSES_PER_HOST: a client cannot make
          // the controller store arbitrary keys.
          if (!key.startsWith(`${host.hostname}/`) || graph.getEndpoint(key)?.host !== host.hostname) {
            refused("endpoint-unknown");
            return;
          }
          if (!status.hasEndpoint(key) && status.endpointCount(host.hostname) >= MAX_ENDPOINT_STATUSES_PER_HOST) {
            refused("endpoint-cap");
            return;
          }
          status.putEndpoint({
            endpointKey: key, hostname: host.hostname, state: ENDPOINT_STATE[m.value.state], detail: m.value.detail.slice(0, 500),
            updatedUnixMs: Date.now(),
          });
        }
      });
      call.on("end", () => {
        finish();
        call.end();
      });
      call.on("error", finish);
      call.on("cancelled", finish);
      call.on("close", finish);
    },
  };
}
