// DataplaneSyncService: one bidirectional stream per host. The driver says
// hello; we answer with a snapshot, an in-sync marker, then deltas (through
// the SyncHub). What the driver reports back becomes status in etcd.
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { CalcGraph } from "../calc/index.js";
import type { DataplaneSyncServiceServer, SyncRequest, SyncResponse } from "../gen/palisade/sync/v1/sync.js";
import { InterfaceState } from "../gen/palisade/sync/v1/sync.js";
import { EndpointState, type HostStatus } from "../gen/palisade/status/v1/status.js";
import { ID_RE, LIMITS } from "../model/index.js";
import { peerIdentity } from "../common/tls.js";
import type { StatusStore } from "./status-store.js";
import { HostStream, type SyncHub } from "./sync-hub.js";

const HELLO_TIMEOUT_MS = 10_000;

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
  call.emit("error", { code, details, metadata: new grpc.Metadata() });
}

export function createSyncService(opts: {
  graph: CalcGraph; hub: SyncHub; status: StatusStore; logger: Logger; replicaId: string; onReset?: () => void;
  /** mTLS on: the client certificate must name the host said in the hello (host identity). */
  requireHostIdentity?: boolean;
  onDenied?: (method: string, reason: string) => void;
}): DataplaneSyncServiceServer {
  const { graph, hub, status, replicaId } = opts;
  return {
    sync(call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>) {
      let stream: HostStream | undefined;
      let host: HostStatus | undefined;
      let logger = opts.logger;
      let ended = false;
      const helloTimer = setTimeout(() => {
        if (!stream) endWithStatus(call, grpc.status.DEADLINE_EXCEEDED, "no hello within 10s");
      }, HELLO_TIMEOUT_MS);

      const publish = () => {
        if (host) status.putHost({ ...host, updatedUnixMs: Date.now() });
      };
      const finish = () => {
        if (ended) return;
        ended = true;
        clearTimeout(helloTimer);
        if (stream) {
          hub.detach(stream);
          // A newer stream of the same host (a quick reconnect) keeps its status.
          if (!hub.hasHost(stream.host)) {
            status.removeHost(stream.host);
            graph.releaseHost(stream.host);
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
          clearTimeout(helloTimer);
          logger = opts.logger.child({ host: name });
          host = {
            hostname: name, connected: true, inSync: false, appliedRevision: 0, lastError: "", lastApplyMs: 0,
            driverVersion: m.value.driverVersion, iptablesBackend: m.value.iptablesBackend, controller: replicaId,
            updatedUnixMs: Date.now(), connectedUnixMs: Date.now(),
          };
          publish();
          stream = new HostStream(name, call, graph, logger, opts.onReset);
          hub.attach(stream);
          logger.info({ driverVersion: m.value.driverVersion, backend: m.value.iptablesBackend }, "driver connected; snapshot sent");
          return;
        }
        if (!stream || !host) return; // everything else needs a hello first
        if (m.$case === "applied") {
          host.lastApplyMs = m.value.durationMs;
          if (m.value.ok) {
            host.inSync = true;
            host.appliedRevision = Math.max(host.appliedRevision, m.value.revision);
            host.lastError = "";
          } else {
            host.lastError = m.value.error.slice(0, 2000);
            logger.warn({ revision: m.value.revision, error: host.lastError }, "driver failed to apply");
          }
          publish();
        } else if (m.$case === "endpointStatus") {
          const key = m.value.endpointKey;
          if (!key.startsWith(`${host.hostname}/`) || key.split("/").length !== 4 || !key.split("/").every((p) => ID_RE.test(p))) return;
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
