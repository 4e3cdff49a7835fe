// DataplaneSync seen from a driver's side, with a hand-written gRPC client:
// snapshot -> in-sync -> deltas carrying revisions, the flush order within a
// batch, and status flowing back into etcd.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { DataplaneSyncServiceClient, InterfaceState, type SyncRequest, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;

function connect(hostname: string) {
  const client = new DataplaneSyncServiceClient(t.address, grpc.credentials.createInsecure());
  const stream = client.sync();
  const batches: SyncResponse[] = [];
  stream.on("data", (b: SyncResponse) => batches.push(b));
  stream.on("error", () => undefined);
  stream.write({ message: { $case: "hello", value: { hostname, driverVersion: "test", ipv6: true, iptablesBackend: "nft" } } });
  return {
    batches,
    send: (m: SyncRequest) => stream.write(m),
    close() { stream.cancel(); client.close(); },
  };
}

const kinds = (b: SyncResponse) => b.updates.map((u) => u.update!.$case);

describe("DataplaneSync", () => {
  beforeAll(async () => { t = await startTestController({ heartbeatMs: 300 }); });
  afterAll(async () => { await t.stop(); });

  it("sends a snapshot, then deltas with revisions, in the contract's order", async () => {
    const d = connect("hv1");
    await eventually(async () => d.batches.some((b) => b.inSync), { what: "snapshot" });
    expect(d.batches[0]!.snapshotStart).toBe(true);
    const snap = d.batches.flatMap((b) => b.updates);
    // An empty host still gets its fail-closed entry chains.
    expect(snap.filter((u) => u.update?.$case === "chainUpdate").map((u) => (u.update as { value: { name: string } }).value.name)).toContain("pal-from-wl-dispatch");

    const apply = await call(t.clients.policy, t.clients.policy.apply, { deletes: [],
      documents: parseDocuments([
        { kind: "Profile", id: "db", tags: ["db"], inbound_rules: [{ protocol: "tcp", src_tag: "db-user", dst_ports: [5432] }], outbound_rules: [{}] },
        { kind: "Endpoint", host: "hv1", orchestrator: "t", workload: "w", id: "e", name: "tapdb", state: "active", ipv4_nets: ["198.18.1.2"], profile_ids: ["db"] },
      ]).map(documentToPb),
    });
    await eventually(async () => d.batches.some((b) => b.revision === apply.revision && b.updates.length > 0), { what: "delta" });
    const delta = d.batches.find((b) => b.revision === apply.revision && b.updates.length > 0)!;
    const k = kinds(delta);
    // ipsets the chains need come first; chains after.
    expect(k.indexOf("ipsetUpdate")).toBeGreaterThanOrEqual(0);
    expect(k.indexOf("ipsetUpdate")).toBeLessThan(k.indexOf("chainUpdate"));
    expect(k).toContain("endpointUpdate");

    // Deleting the profile: chain removals before ipset removals.
    const del = await call(t.clients.policy, t.clients.policy.delete, { objects: [{ kind: { $case: "profileId", value: "db" } }], ignoreMissing: false });
    await eventually(async () => d.batches.some((b) => b.revision === del.revision && b.updates.length > 0), { what: "delete delta" });
    const k2 = kinds(d.batches.find((b) => b.revision === del.revision && b.updates.length > 0)!);
    expect(k2.lastIndexOf("chainRemove")).toBeLessThan(k2.indexOf("ipsetRemove"));
    d.close();
  });

  it("tells every host about new revisions, even hosts a change does not touch", async () => {
    const d = connect("hv-idle");
    await eventually(async () => d.batches.some((b) => b.inSync), { what: "snapshot" });
    const r = await call(t.clients.policy, t.clients.policy.apply, { deletes: [],
      documents: parseDocuments([{ kind: "Profile", id: "unrelated", tags: [], inbound_rules: [], outbound_rules: [] }]).map(documentToPb),
    });
    await eventually(async () => d.batches.some((b) => b.revision >= r.revision), { what: "revision marker" });
    d.close();
  });

  it("keeps idle streams alive with empty heartbeat batches at the current revision", async () => {
    const d = connect("hv-heartbeat");
    await eventually(async () => d.batches.some((b) => b.inSync), { what: "snapshot" });
    const n = d.batches.length;
    const rev = d.batches.at(-1)!.revision;
    await eventually(async () => d.batches.length >= n + 2, { what: "two heartbeats", timeoutMs: 5_000 });
    for (const b of d.batches.slice(n)) expect(b).toMatchObject({ revision: rev, updates: [], snapshotStart: false, inSync: false });
    d.close();
  });

  it("persists reported status and removes it when the driver goes away", async () => {
    await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments([
      { kind: "Endpoint", host: "hv-status", orchestrator: "t", workload: "w", id: "e", name: "tapst", state: "active", ipv4_nets: ["198.18.9.9"], profile_ids: [] },
    ]).map(documentToPb) });
    const d = connect("hv-status");
    await eventually(async () => d.batches.some((b) => b.inSync), { what: "snapshot" });
    const rev = d.batches.at(-1)!.revision;
    d.send({ message: { $case: "applied", value: { revision: rev, ok: true, error: "", durationMs: 12.5, chainsWritten: 3, ipsetLines: 0 } } });
    d.send({ message: { $case: "endpointStatus", value: { endpointKey: "hv-status/t/w/e", state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
    // A driver may only report endpoints of its own host.
    d.send({ message: { $case: "endpointStatus", value: { endpointKey: "other-host/t/w/e", state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
    // ... and only endpoints the model gives its host.
    d.send({ message: { $case: "endpointStatus", value: { endpointKey: "hv-status/t/w/not-in-model", state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
    const s = await eventually(async () => {
      const st = await call(t.clients.status, t.clients.status.getStatus, {});
      const h = st.hosts.find((x) => x.hostname === "hv-status");
      return h?.inSync && st.endpoints.some((e) => e.endpointKey === "hv-status/t/w/e") ? st : undefined;
    }, { what: "status in etcd" });
    const h = s!.hosts.find((x) => x.hostname === "hv-status")!;
    expect(h.appliedRevision).toBe(rev);
    expect(h.lastApplyMs).toBe(12.5);
    expect(s!.endpoints.some((e) => e.endpointKey.startsWith("other-host/"))).toBe(false);
    expect(s!.endpoints.some((e) => e.endpointKey === "hv-status/t/w/not-in-model")).toBe(false);
    d.close();
    await eventually(async () => {
      const st = await call(t.clients.status, t.clients.status.getStatus, {});
      return !st.hosts.some((x) => x.hostname === "hv-status") && !st.endpoints.some((e) => e.endpointKey.startsWith("hv-status/"));
    }, { what: "status removed" });
  });
});
