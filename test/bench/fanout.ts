// fanout: one tag change reaching N connected sync streams. Each of N hosts
// has an endpoint whose profile admits a tag; a new member of that tag must
// reach every host's stream as an ipset delta. Measured from the API write to
// the last stream receiving it.
//
// The N streams connect the way drivers do: each is the driver's own sync
// client (services/driver/sync/sync-client.ts), so a hello refused by admission
// (UNAVAILABLE, DESIGN §9.3: burst 400, 200/s by default) is retried with the
// driver's jittered backoff instead of waited on forever. Opening 1,000 at
// once is a reconnect storm; `connect_s` and `retries` say what it cost.
import { pino } from "pino";
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { call, createClients } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startController } from "../../services/controller/controller.js";
import type { AdmissionOptions } from "../../services/controller/stream-admission.js";
import { startSyncClient, type SyncClient } from "../../services/driver/sync/sync-client.js";
import type { SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { startEtcd } from "../lab/etcd-process.js";
import { parseDocuments } from "../../services/model/index.js";
import { orAbort } from "./deadline.js";
import { round, summarize } from "./stats.js";

export async function benchFanout(opts: { streams: number; samples: number; admission?: AdmissionOptions; signal?: AbortSignal }) {
  const dir = mkdtempSync(join(tmpdir(), "palisade-fanout-"));
  const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  const controller = await startController({ etcdEndpoints: [etcd.url], listen: "127.0.0.1:0", admission: opts.admission, logger: createLogger({ name: "bench", level: "silent" }) });
  const addr = `127.0.0.1:${controller.port}`;
  const clients = createClients(addr);
  const syncClients: SyncClient[] = [];
  // The sync client logs one warning per failed attempt before it backs off:
  // counting them counts the retries.
  let retries = 0;
  const lastReasons = new Map<string, number>();
  const clientLogger = pino({ level: "warn" }, {
    write(line: string) {
      retries++;
      const reason = String((JSON.parse(line) as { reason?: string }).reason ?? "").replace(/^[^ ]+: /, "");
      if (lastReasons.size < 20 || lastReasons.has(reason)) lastReasons.set(reason, (lastReasons.get(reason) ?? 0) + 1);
    },
  });
  try {
    const docs: unknown[] = [
      { kind: "Profile", id: "srv", tags: [], inbound_rules: [{ protocol: "tcp", src_tag: "clients", dst_ports: [443] }], outbound_rules: [{}] },
      { kind: "Profile", id: "cli", tags: ["clients"], inbound_rules: [], outbound_rules: [{}] },
    ];
    for (let h = 0; h < opts.streams; h++) {
      docs.push({ kind: "Endpoint", host: `h${h}`, orchestrator: "b", workload: "w", id: "e", name: "tap0", state: "active", ipv4_nets: [`10.${h >> 8}.${h & 255}.1`], profile_ids: ["srv"] });
    }
    await orAbort(call(clients.policy, clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) }), opts.signal, "loading the model");
    // Connect every host and wait for its snapshot.
    const seen = new Map<number, number>(); // host -> highest revision with an ipset delta
    const synced = new Set<number>(); // hosts whose stream reached in-sync at least once
    let waiter: { rev: number; resolve: () => void } | undefined;
    let onSynced: (() => void) | undefined;
    const check = () => {
      if (!waiter) return;
      let done = 0;
      for (const r of seen.values()) if (r >= waiter.rev) done++;
      if (done === opts.streams) waiter.resolve();
    };
    const tc = performance.now();
    for (let h = 0; h < opts.streams; h++) {
      syncClients.push(startSyncClient({
        controllers: [addr],
        hello: { hostname: `h${h}`, driverVersion: "bench", ipv6: false, iptablesBackend: "nft", features: [...DRIVER_FEATURES] },
        logger: clientLogger,
        onConnected: () => undefined,
        onDisconnected: () => undefined,
        onBatch: (b: SyncResponse) => {
          if (b.inSync && !synced.has(h)) {
            synced.add(h);
            if (synced.size === opts.streams) onSynced?.();
          }
          if (b.updates.some((u) => u.update?.$case === "ipsetDelta")) {
            seen.set(h, b.revision);
            check();
          }
        },
      }));
    }
    const reasons = () => [...lastReasons].map(([r, n]) => `${n}× ${r}`).join("; ") || "none";
    await orAbort(new Promise<void>((resolve) => { onSynced = resolve; if (synced.size === opts.streams) resolve(); }), opts.signal,
      () => `connecting: ${synced.size} of ${opts.streams} streams in sync, ${retries} retries (${reasons()})`);
    const connectMs = performance.now() - tc;
    const samples: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      const t0 = performance.now();
      const r = await orAbort(call(clients.policy, clients.policy.apply, { deletes: [],
        documents: parseDocuments([{ kind: "Endpoint", host: "client-host", orchestrator: "b", workload: `c${i}`, id: "e", name: "tapc", state: "active", ipv4_nets: [`192.0.2.${i + 1}`], profile_ids: ["cli"] }]).map(documentToPb),
      }), opts.signal, `writing sample ${i + 1}`);
      await orAbort(new Promise<void>((resolve) => { waiter = { rev: r.revision, resolve }; check(); }), opts.signal, () => {
        let done = 0;
        for (const v of seen.values()) if (v >= r.revision) done++;
        return `sample ${i + 1} of ${opts.samples}: ${done} of ${opts.streams} streams received revision ${r.revision}`;
      });
      samples.push(performance.now() - t0);
      // Each sample a new member: delete it again so the next is a change too.
      await orAbort(call(clients.policy, clients.policy.delete, { objects: [{ kind: { $case: "endpoint", value: { host: "client-host", orchestrator: "b", workload: `c${i}`, id: "e" } } }], ignoreMissing: false }),
        opts.signal, `deleting sample ${i + 1}`);
    }
    return { streams: opts.streams, connect_s: round(connectMs / 1000, 1), retries, ...summarize(samples) };
  } finally {
    for (const c of syncClients) c.stop();
    clients.close();
    await controller.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
