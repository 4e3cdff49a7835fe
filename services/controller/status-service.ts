// StatusService: host and endpoint status for monitoring clients and
// `palisadectl status|wait`, read from etcd (so any replica answers for all).
import type * as grpc from "@grpc/grpc-js";
import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import { unary } from "../common/grpc-server.js";
import type { StatusServiceServer, WatchStatusRequest, WatchStatusResponse } from "../gen/palisade/status/v1/status.js";
import type { EtcdStore } from "./etcd-store.js";
import type { StatusStore } from "./status-store.js";

export function createStatusService(opts: { client: Etcd3; store: EtcdStore; status: StatusStore; logger: Logger }): StatusServiceServer {
  const { client, store, status, logger } = opts;
  const keys = store.keys;
  return {
    getStatus: unary(logger, async () => {
      const [s, modelRevision] = await Promise.all([status.read(), store.modelRevision()]);
      return { hosts: s.hosts, endpoints: s.endpoints, modelRevision };
    }),
    watchStatus(call: grpc.ServerWritableStream<WatchStatusRequest, WatchStatusResponse>) {
      let cancelled = false;
      let close: (() => Promise<void>) | undefined;
      call.on("cancelled", () => {
        cancelled = true;
        void close?.();
      });
      (async () => {
        const [s, modelRevision] = await Promise.all([status.read(), store.modelRevision()]);
        call.write({ snapshot: true, hosts: s.hosts, endpoints: s.endpoints, removedHosts: [], removedEndpoints: [], modelRevision });
        // Watch the status prefix and the model revision key from the snapshot on.
        const watcher = await client.watch().prefix(keys.status).startRevision(String(s.revision + 1)).create();
        const revWatcher = await client.watch().key(keys.revision).startRevision(String(s.revision + 1)).create();
        close = async () => { await watcher.cancel(); await revWatcher.cancel(); };
        if (cancelled) return close();
        revWatcher.on("put", (kv) => {
          call.write({ snapshot: false, hosts: [], endpoints: [], removedHosts: [], removedEndpoints: [], modelRevision: Number(kv.mod_revision) });
        });
        watcher.on("data", (res) => {
          const out: WatchStatusResponse = { snapshot: false, hosts: [], endpoints: [], removedHosts: [], removedEndpoints: [], modelRevision: 0 };
          for (const ev of res.events) {
            const k = ev.kv.key.toString();
            const isHost = k.startsWith(keys.hostStatus);
            const id = k.slice((isHost ? keys.hostStatus : keys.endpointStatus).length);
            if (ev.type === "Put") {
              try {
                const v = JSON.parse(ev.kv.value.toString());
                (isHost ? out.hosts : out.endpoints).push(v);
              } catch { /* ignore undecodable */ }
            } else (isHost ? out.removedHosts : out.removedEndpoints).push(id);
          }
          call.write(out);
        });
        watcher.on("error", (err) => call.destroy(err));
      })().catch((err) => {
        logger.warn({ err: (err as Error).message }, "status watch failed");
        call.destroy(err as Error);
      });
    },
  };
}
