// fanout: one tag change reaching N connected sync streams. Each of N hosts
// has an endpoint whose profile admits a tag; a new member of that tag must
// reach every host's stream as an ipset delta. Measured from the API write to
// the last stream receiving it.
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { call, createClients } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createLogger } from "../../services/runtime/logger.js";
import { startController } from "../../services/controller/controller.js";
import { DataplaneSyncServiceClient, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { startEtcd } from "../lab/etcd-process.js";
import { parseDocuments } from "../../services/model/index.js";
import { summarize } from "./stats.js";

export async function benchFanout(opts: { streams: number; samples: number }) {
  const dir = mkdtempSync(join(tmpdir(), "palisade-fanout-"));
  const etcd = await startEtcd({ dataDir: join(dir, "etcd") });
  const controller = await startController({ etcdEndpoints: [etcd.url], listen: "127.0.0.1:0", logger: createLogger({ name: "bench", level: "silent" }) });
  const addr = `127.0.0.1:${controller.port}`;
  const clients = createClients(addr);
  const channels = Array.from({ length: Math.ceil(opts.streams / 100) }, (_, i) =>
    new DataplaneSyncServiceClient(addr, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1, "grpc.channel_id": i } as grpc.ChannelOptions));
  const calls: grpc.ClientDuplexStream<unknown, SyncResponse>[] = [];
  try {
    const docs: unknown[] = [
      { kind: "Profile", id: "srv", tags: [], inbound_rules: [{ protocol: "tcp", src_tag: "clients", dst_ports: [443] }], outbound_rules: [{}] },
      { kind: "Profile", id: "cli", tags: ["clients"], inbound_rules: [], outbound_rules: [{}] },
    ];
    for (let h = 0; h < opts.streams; h++) {
      docs.push({ kind: "Endpoint", host: `h${h}`, orchestrator: "b", workload: "w", id: "e", name: "tap0", state: "active", ipv4_nets: [`10.${h >> 8}.${h & 255}.1`], profile_ids: ["srv"] });
    }
    await call(clients.policy, clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) });
    // Connect every host and wait for its snapshot.
    const seen = new Map<number, number>(); // host -> highest revision with an ipset delta
    let synced = 0;
    let waiter: { rev: number; resolve: () => void } | undefined;
    const check = () => {
      if (!waiter) return;
      let done = 0;
      for (const r of seen.values()) if (r >= waiter.rev) done++;
      if (done === opts.streams) waiter.resolve();
    };
    await new Promise<void>((resolve) => {
      for (let h = 0; h < opts.streams; h++) {
        const c = channels[Math.floor(h / 100)]!.sync();
        calls.push(c as never);
        c.on("data", (b: SyncResponse) => {
          if (b.inSync && ++synced === opts.streams) resolve();
          if (b.updates.some((u) => u.update?.$case === "ipsetDelta")) {
            seen.set(h, b.revision);
            check();
          }
        });
        c.on("error", () => undefined);
        c.write({ message: { $case: "hello", value: { hostname: `h${h}`, driverVersion: "bench", ipv6: false, iptablesBackend: "nft", features: [...DRIVER_FEATURES] } } });
      }
    });
    const samples: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      const t0 = performance.now();
      const r = await call(clients.policy, clients.policy.apply, { deletes: [],
        documents: parseDocuments([{ kind: "Endpoint", host: "client-host", orchestrator: "b", workload: `c${i}`, id: "e", name: "tapc", state: "active", ipv4_nets: [`192.0.2.${i + 1}`], profile_ids: ["cli"] }]).map(documentToPb),
      });
      await new Promise<void>((resolve) => { waiter = { rev: r.revision, resolve }; check(); });
      samples.push(performance.now() - t0);
      // Each sample a new member: delete it again so the next is a change too.
      await call(clients.policy, clients.policy.delete, { objects: [{ kind: { $case: "endpoint", value: { host: "client-host", orchestrator: "b", workload: `c${i}`, id: "e" } } }], ignoreMissing: false });
    }
    return { streams: opts.streams, ...summarize(samples) };
  } finally {
    for (const c of calls) c.cancel();
    for (const ch of channels) ch.close();
    clients.close();
    await controller.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
