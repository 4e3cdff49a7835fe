// DataplaneSync seen from a driver's side, with a hand-written gRPC client:
// snapshot -> in-sync -> deltas carrying revisions, the flush order within a
// batch, and status flowing back into etcd.
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { DataplaneSyncServiceClient, InterfaceState, IpFamily, type SyncRequest, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;

function connect(hostname: string, ipv6 = true, features: readonly string[] = DRIVER_FEATURES) {
  const client = new DataplaneSyncServiceClient(t.address, grpc.credentials.createInsecure());
  const stream = client.sync();
  const batches: SyncResponse[] = [];
  stream.on("data", (b: SyncResponse) => batches.push(b));
  stream.on("error", () => undefined);
  stream.write({ message: { $case: "hello", value: { hostname, driverVersion: "test", ipv6, iptablesBackend: "nft", features: [...features] } } });
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

  // Drivers lacking a feature the controller renders for: driver-features.test.ts.

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

  it("honours the hello: a driver without IPv6 receives no IPv6 chain or set, in the snapshot or after", async () => {
    const families = (bs: SyncResponse[]) => new Set(bs.flatMap((b) => b.updates.flatMap((u) => {
      const v = u.update?.value as { family?: IpFamily; table?: string } | undefined;
      return v && "family" in v && v.family !== undefined ? [v.family] : [];
    })));
    const v4 = connect("hv-v4only", false);
    const both = connect("hv-v4only-peer", true);
    await eventually(async () => v4.batches.some((b) => b.inSync) && both.batches.some((b) => b.inSync), { what: "snapshots" });
    const r = await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments([
      { kind: "Profile", id: "fam", tags: ["fam"], inbound_rules: [{ src_tag: "fam" }], outbound_rules: [{}] },
      { kind: "Endpoint", host: "hv-v4only", orchestrator: "t", workload: "w", id: "e", name: "tapv4", state: "active", ipv4_nets: ["198.18.7.1"], ipv6_nets: ["2001:db8::71"], profile_ids: ["fam"] },
      { kind: "Endpoint", host: "hv-v4only-peer", orchestrator: "t", workload: "w", id: "e", name: "tapv6", state: "active", ipv4_nets: ["198.18.7.2"], ipv6_nets: ["2001:db8::72"], profile_ids: ["fam"] },
    ]).map(documentToPb) });
    await eventually(async () => v4.batches.some((b) => b.revision >= r.revision && b.updates.length) && both.batches.some((b) => b.revision >= r.revision && b.updates.length), { what: "deltas" });
    // The peer (IPv6 on) proves there was IPv6 to send.
    expect(families(both.batches)).toEqual(new Set([IpFamily.IP_FAMILY_V4, IpFamily.IP_FAMILY_V6]));
    expect(families(v4.batches)).toEqual(new Set([IpFamily.IP_FAMILY_V4]));
    v4.close();
    both.close();
  });

  it("infers progress: a host acknowledges only what changed it; revisions that bring it nothing count as applied without an answer", async () => {
    const quiet = connect("hv-quiet");
    await eventually(async () => quiet.batches.some((b) => b.inSync), { what: "snapshot" });
    const snap = quiet.batches.find((b) => b.inSync)!;
    // The controller says so on the snapshot; the host acknowledges the snapshot only.
    expect(snap.acksForContentOnly).toBe(true);
    const silent = connect("hv-silent");
    await eventually(async () => silent.batches.some((b) => b.inSync), { what: "second snapshot" });
    quiet.send({ message: { $case: "applied", value: { revision: snap.revision, ok: true, error: "", durationMs: 1, chainsWritten: 0, ipsetLines: 0 } } });
    // A write that touches neither host.
    const r = await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments([{ kind: "Profile", id: `elsewhere-${Date.now()}`, tags: [] }]).map(documentToPb) });
    await eventually(async () => quiet.batches.some((b) => b.revision >= r.revision), { what: "marker delivered" });
    const st = await eventually(async () => {
      const s = await call(t.clients.status, t.clients.status.getStatus, {});
      const q = s.hosts.find((h) => h.hostname === "hv-quiet");
      return q && q.appliedRevision >= r.revision ? s : undefined;
    }, { what: "hv-quiet applied the new revision without answering" });
    // A host that never acknowledged its snapshot is not taken to have applied anything.
    const sil = st!.hosts.find((h) => h.hostname === "hv-silent");
    expect(sil === undefined || !sil.inSync).toBe(true);
    quiet.close();
    silent.close();
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
