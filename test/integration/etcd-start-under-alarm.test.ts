// A new controller replica starts while etcd refuses writes (NOSPACE alarm
// raised, a model already stored): it must load the model and serve reads,
// Trace, and a driver's sync stream. Nothing in the start path may need a
// write. (The status lease is the status store's: granted in the background
// by the status-path rewrite; until that lands this test fails at start.)
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import { fillUntilNoSpace } from "../support/etcd-space.js";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { createEtcdClient } from "../../services/controller/etcd-client.js";
import { DataplaneSyncServiceClient, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { Verdict } from "../../services/gen/palisade/policy/v1/policy.js";
import { startEtcd, type EtcdProcess } from "../lab/etcd-process.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, uniqueName } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

const dir = mkdtempSync(join(tmpdir(), "palisade-start-alarm-"));
const prefix = `/${uniqueName("alarm")}`;
let etcd: EtcdProcess;
let t: Awaited<ReturnType<typeof startTestController>> | undefined;

const MODEL = [
  { kind: "Profile", id: "db", tags: [], inbound_rules: [{ action: "allow", protocol: "tcp", dst_ports: [5432] }], outbound_rules: [{ action: "allow" }] },
  { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "vm-1", id: "e1", name: "tap1", state: "active", mac: "02:00:00:00:00:01", ipv4_nets: ["198.18.1.2/32"], profile_ids: ["db"] },
  { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "vm-2", id: "e2", name: "tap2", state: "active", mac: "02:00:00:00:00:02", ipv4_nets: ["198.18.1.3/32"], profile_ids: ["db"] },
];

describe("a replica starting under the NOSPACE alarm", () => {
  beforeAll(async () => {
    etcd = await startEtcd({ dataDir: join(dir, "etcd"), quotaBackendBytes: 3 * 1024 * 1024 });
    // The model, written by a first replica while etcd still had space.
    const first = await startTestController({ etcdEndpoints: [etcd.url], prefix });
    await call(first.clients.policy, first.clients.policy.apply, { documents: parseDocuments(MODEL).map(documentToPb), deletes: [] });
    await first.stop();
    const raw = createEtcdClient({ endpoints: [etcd.url] }, "model");
    try {
      await fillUntilNoSpace(raw);
      expect((await raw.maintenance.alarm({ action: "Get" })).alarms.length).toBeGreaterThan(0);
    } finally {
      raw.close();
    }
  });
  afterAll(async () => {
    await t?.stop();
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("starts, serves reads and Trace, and gives a driver a snapshot", async () => {
    t = await Promise.race([
      startTestController({ etcdEndpoints: [etcd.url], prefix }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("controller did not start within 20 s under the NOSPACE alarm")), 20_000)),
    ]);
    const p = await call(t.clients.policy, t.clients.policy.getProfile, { id: "db" });
    expect(p.profile?.id).toBe("db");
    const eps = await call(t.clients.policy, t.clients.policy.listEndpoints, { host: "hv1" });
    expect(eps.endpoints.map((e) => e.id).sort()).toEqual(["e1", "e2"]);
    const tr = await call(t.clients.policy, t.clients.policy.trace, { src: "198.18.1.2", dst: "198.18.1.3", protocol: "tcp", dstPort: 5432 });
    expect(tr.verdict).toBe(Verdict.VERDICT_ALLOW);

    const client = new DataplaneSyncServiceClient(t.address, grpc.credentials.createInsecure());
    const stream = client.sync();
    const batches: SyncResponse[] = [];
    stream.on("data", (b: SyncResponse) => batches.push(b));
    stream.on("error", () => undefined);
    stream.write({ message: { $case: "hello", value: { hostname: "hv1", driverVersion: "test", ipv6: true, iptablesBackend: "nft", features: [...DRIVER_FEATURES] } } });
    try {
      await eventually(async () => batches.some((b) => b.inSync), { what: "snapshot and in-sync marker", timeoutMs: 10_000 });
      expect(batches[0]!.snapshotStart).toBe(true);
      const kinds = batches.flatMap((b) => b.updates.map((u) => u.update!.$case));
      expect(kinds).toContain("endpointUpdate");
    } finally {
      stream.cancel();
      client.close();
    }
  });
});
