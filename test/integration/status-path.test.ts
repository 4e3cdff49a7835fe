// The status path under load and hostile clients (issue #12): status writes
// follow state changes, not acknowledgements; a client cannot make the
// controller store arbitrary keys; hello/close storms and stream piles cost
// bounded work; policy writes keep working throughout.
import { DRIVER_FEATURES } from "../../services/contract/driver-features.js";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { DataplaneSyncServiceClient, InterfaceState, type SyncRequest, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, palisadectl, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

type TestController = Awaited<ReturnType<typeof startTestController>>;

/** A driver stand-in: hello, and (optionally) an ack for every new revision, as a real driver sends. */
function host(address: string, hostname: string, opts: { ack?: boolean; driverVersion?: string; iptablesBackend?: string; durationMs?: (revision: number) => number } = {}) {
  const client = new DataplaneSyncServiceClient(address, grpc.credentials.createInsecure());
  const stream = client.sync();
  const state = { inSync: false, revision: 0, error: undefined as grpc.ServiceError | undefined, ended: false };
  let acked = 0;
  stream.on("data", (b: SyncResponse) => {
    if (b.inSync) state.inSync = true;
    if (!state.inSync || b.partial) return;
    state.revision = Math.max(state.revision, b.revision);
    if (opts.ack && (b.revision > acked || b.updates.length)) {
      acked = Math.max(acked, b.revision);
      stream.write({ message: { $case: "applied", value: { revision: b.revision, ok: true, error: "", durationMs: opts.durationMs?.(b.revision) ?? 1, chainsWritten: 0, ipsetLines: 0 } } });
    }
  });
  stream.on("error", (e: grpc.ServiceError) => { state.error = e; state.ended = true; });
  stream.on("end", () => { state.ended = true; });
  stream.write({ message: { $case: "hello", value: { hostname, driverVersion: opts.driverVersion ?? "test", ipv6: true, iptablesBackend: opts.iptablesBackend ?? "nft", features: [...DRIVER_FEATURES] } } });
  return {
    state,
    send: (m: SyncRequest) => stream.write(m),
    close() { stream.cancel(); client.close(); },
  };
}

const endpointDoc = (h: string, i: number) => ({
  kind: "Endpoint", host: h, orchestrator: "t", workload: `w${i}`, id: "e", name: `tap${i}`, state: "active",
  ipv4_nets: [`198.18.${(i >> 8) & 255}.${i & 255}`], profile_ids: ["p"],
});

async function apply(t: TestController, docs: unknown[]) {
  return call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments(docs).map(documentToPb) });
}

/**
 * Counts the etcd revisions that touched this controller's status keys from
 * now on (other test files share the etcd, so the global revision says nothing).
 */
async function countStatusRevisions(etcd: Etcd3, prefix: string) {
  const revisions = new Set<string>();
  let keys = 0;
  const w = await etcd.watch().prefix(`${prefix}/status/`).create();
  w.on("data", (res) => { for (const ev of res.events) { revisions.add(ev.kv.mod_revision); keys++; } });
  return { get revisions() { return revisions.size; }, get keys() { return keys; }, stop: () => w.cancel() };
}

async function statusKeyCount(etcd: Etcd3, prefix: string): Promise<number> {
  return Number(await etcd.getAll().prefix(`${prefix}/status/`).count());
}

describe("status path", () => {
  let etcd: Etcd3;
  beforeAll(() => { etcd = new Etcd3({ hosts: [inject("etcdUrl")] }); });
  afterAll(() => etcd.close());

  it("writes status in proportion to state changes: a model write acknowledged by 60 hosts costs at most 2 status revisions", async () => {
    const t = await startTestController();
    const hosts: ReturnType<typeof host>[] = [];
    try {
      await apply(t, [{ kind: "Profile", id: "p", tags: ["p"], inbound_rules: [{ protocol: "tcp", src_tag: "p" }], outbound_rules: [{}] }]);
      for (let i = 0; i < 60; i++) hosts.push(host(t.address, `hv${i}`, { ack: true }));
      await eventually(async () => hosts.every((h) => h.state.inSync), { what: "all hosts in sync" });
      // Let the connect-time records settle, then count only what model writes cause.
      const first = await call(t.clients.policy, t.clients.policy.getRevision, {});
      await eventually(async () => {
        const s = await call(t.clients.status, t.clients.status.getStatus, {});
        return s.hosts.length === 60 && s.hosts.every((h) => h.inSync && h.appliedRevision >= first.revision);
      }, { what: "initial status" });
      const counter = await countStatusRevisions(etcd, t.prefix);
      const writes = 15;
      let last = 0;
      for (let i = 0; i < writes; i++) {
        last = (await apply(t, [endpointDoc(`hv${i % 60}`, i)])).revision;
        // Spaced writes: each is acknowledged by every host before the next.
        await eventually(async () => hosts.every((h) => h.state.revision >= last), { what: "delivered", intervalMs: 5 });
        await new Promise((r) => setTimeout(r, 100));
      }
      // Every host's applied revision reaches status (what `wait` needs).
      await eventually(async () => {
        const s = await call(t.clients.status, t.clients.status.getStatus, {});
        return s.hosts.length === 60 && s.hosts.every((h) => h.appliedRevision >= last);
      }, { what: "applied revisions in status" });
      await new Promise((r) => setTimeout(r, 500));
      await counter.stop();
      // Before: one etcd revision per host per model write (60 x 15 = 900).
      expect(counter.revisions).toBeGreaterThan(0);
      expect(counter.revisions).toBeLessThanOrEqual(2 * writes);
    } finally {
      for (const h of hosts) h.close();
      await t.stop();
    }
  });

  it("stores endpoint statuses only for the host's own endpoints in the model: a flood of 50,000 keys writes nothing and policy writes keep working", { timeout: 120_000 }, async () => {
    const t = await startTestController();
    try {
      await apply(t, [{ kind: "Profile", id: "p", tags: [], inbound_rules: [], outbound_rules: [] }, endpointDoc("hv-flood", 1)]);
      const h = host(t.address, "hv-flood");
      await eventually(async () => h.state.inSync, { what: "in sync" });
      for (let i = 0; i < 50_000; i++) {
        h.send({ message: { $case: "endpointStatus", value: { endpointKey: `hv-flood/x/w${i}/e`, state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
      }
      h.send({ message: { $case: "endpointStatus", value: { endpointKey: "hv-flood/t/w1/e", state: InterfaceState.INTERFACE_STATE_UP, detail: "" } } });
      // The one real endpoint's status arrives; nothing else was stored.
      await eventually(async () => {
        const s = await call(t.clients.status, t.clients.status.getStatus, {});
        return s.endpoints.some((e) => e.endpointKey === "hv-flood/t/w1/e");
      }, { what: "the real endpoint's status", timeoutMs: 90_000 });
      const t0 = performance.now();
      await apply(t, [endpointDoc("hv-flood", 2)]);
      expect(performance.now() - t0).toBeLessThan(10_000);
      // Host record, progress and one endpoint status.
      expect(await statusKeyCount(etcd, t.prefix)).toBeLessThanOrEqual(3);
      // Deleting the endpoint from the model drops its status (pruned every 10 s).
      await call(t.clients.policy, t.clients.policy.delete, { objects: [{ kind: { $case: "endpoint", value: { host: "hv-flood", orchestrator: "t", workload: "w1", id: "e" } } }], ignoreMissing: false });
      await eventually(async () => {
        const s = await call(t.clients.status, t.clients.status.getStatus, {});
        return !s.endpoints.some((e) => e.endpointKey === "hv-flood/t/w1/e");
      }, { what: "status of the deleted endpoint dropped", timeoutMs: 30_000 });
      h.close();
    } finally {
      await t.stop();
    }
  });

  it("a storm of 500 streams opening and closing costs a bounded number of status writes and leaves nothing behind", async () => {
    const t = await startTestController({ admission: { helloRate: 1000, helloBurst: 1000 } });
    try {
      const counter = await countStatusRevisions(etcd, t.prefix);
      for (let round = 0; round < 5; round++) {
        const batch = Array.from({ length: 100 }, (_, i) => host(t.address, `storm${i}`));
        await new Promise((r) => setTimeout(r, 30));
        for (const h of batch) h.close();
      }
      await eventually(async () => t.controller.hub.connectedHosts === 0, { what: "all streams closed" });
      await eventually(async () => (await statusKeyCount(etcd, t.prefix)) === 0, { what: "no status left" });
      await counter.stop();
      // Before: a put per hello and a delete per close (>= 1,000 revisions).
      expect(counter.revisions).toBeLessThan(100);
      // The controller still serves.
      expect((await apply(t, [{ kind: "Profile", id: "after-storm", tags: [], inbound_rules: [], outbound_rules: [] }])).changed).toBe(1);
    } finally {
      await t.stop();
    }
  });

  it("rate-limits hellos (UNAVAILABLE: retry later), caps streams without a hello, and keeps at most two streams per host", async () => {
    const t = await startTestController({ admission: { helloRate: 0.01, helloBurst: 3, hostHelloRate: 0.01, hostHelloBurst: 2, maxPendingHellos: 4 } });
    const open: ReturnType<typeof host>[] = [];
    try {
      // Per host: a burst of 2, then refused.
      const a = [host(t.address, "same"), host(t.address, "same"), host(t.address, "same")];
      open.push(...a);
      await eventually(async () => a[2]!.state.error !== undefined, { what: "third hello refused" });
      expect(a[2]!.state.error!.code).toBe(grpc.status.UNAVAILABLE);
      expect(a[2]!.state.error!.details).toMatch(/reconnects too often/);
      // Overall: a burst of 3, two spent by the admitted "same" hellos: one more, then refused.
      const b = [host(t.address, "other1"), host(t.address, "other2")];
      open.push(...b);
      await eventually(async () => b.some((h) => h.state.error?.code === grpc.status.UNAVAILABLE), { what: "global rate refusal" });
      expect(b.find((h) => h.state.error)!.state.error!.details).toMatch(/too many drivers connecting/);

      // Streams without a hello are capped.
      const silent = Array.from({ length: 6 }, () => {
        const c = new DataplaneSyncServiceClient(t.address, grpc.credentials.createInsecure());
        const s = c.sync();
        const st = { error: undefined as grpc.ServiceError | undefined };
        s.on("error", (e: grpc.ServiceError) => { st.error = e; });
        s.on("data", () => undefined);
        s.write({ message: { $case: "heartbeat", value: { unixMs: 1 } } });
        return { st, close: () => { s.cancel(); c.close(); } };
      });
      await eventually(async () => silent.some((s) => s.st.error?.code === grpc.status.UNAVAILABLE), { what: "pending streams capped" });
      expect(silent.find((s) => s.st.error)!.st.error!.details).toMatch(/waiting for a hello/);
      for (const s of silent) s.close();
    } finally {
      for (const h of open) h.close();
      await t.stop();
    }
  });

  it("a host's third stream supersedes its oldest; the host's status and updates stay", async () => {
    const t = await startTestController();
    const open: ReturnType<typeof host>[] = [];
    let deletes = 0;
    const w = await etcd.watch().key(`${t.prefix}/status/hosts/multi`).create();
    w.on("delete", () => { deletes++; });
    try {
      for (let i = 0; i < 3; i++) {
        open.push(host(t.address, "multi", { ack: true }));
        await eventually(async () => open.at(-1)!.state.inSync, { what: `stream ${i} in sync` });
      }
      await eventually(async () => open[0]!.state.error !== undefined, { what: "oldest ended" });
      expect(open[0]!.state.error!.code).toBe(grpc.status.ABORTED);
      expect(open[0]!.state.error!.details).toMatch(/superseded/);
      expect(open[1]!.state.ended).toBe(false);
      expect(open[2]!.state.ended).toBe(false);
      const s = await eventually(async () => {
        const st = await call(t.clients.status, t.clients.status.getStatus, {});
        return st.hosts.find((h) => h.hostname === "multi" && h.inSync);
      }, { what: "status of the host" });
      expect(s!.connected).toBe(true);
      // Superseding never removed the host's record, and the remaining streams still get the host's changes.
      expect(deletes).toBe(0);
      const r = await apply(t, [{ kind: "Profile", id: "p", tags: [], inbound_rules: [], outbound_rules: [] }, endpointDoc("multi", 5)]);
      await eventually(async () => open[1]!.state.revision >= r.revision && open[2]!.state.revision >= r.revision, { what: "update on both streams" });
    } finally {
      await w.cancel();
      for (const h of open) h.close();
      await t.stop();
    }
  });

  it("when a host's newest stream ends, the host's status is its remaining stream's again, and `wait` returns", async () => {
    requireBuild();
    const t = await startTestController();
    const open: ReturnType<typeof host>[] = [];
    const pair = async () => (await call(t.clients.status, t.clients.status.getStatus, {})).hosts.find((h) => h.hostname === "pair");
    try {
      await apply(t, [{ kind: "Profile", id: "p", tags: [], inbound_rules: [], outbound_rules: [] }, endpointDoc("pair", 1)]);
      const a = host(t.address, "pair", { ack: true, driverVersion: "driver-a" });
      open.push(a);
      await eventually(async () => (await pair())?.inSync && (await pair())?.driverVersion === "driver-a", { what: "A in sync" });
      // B: the same host (another driver version and backend), reads its snapshot, never acknowledges, leaves.
      const b = host(t.address, "pair", { driverVersion: "driver-b", iptablesBackend: "legacy" });
      open.push(b);
      await eventually(async () => b.state.inSync && (await pair())?.driverVersion === "driver-b", { what: "B's record (the newest stream)" });
      expect((await pair())!.inSync).toBe(false);
      // A model write while both are connected: only A acknowledges it (and, not being the newest stream, does not write status).
      const r = await apply(t, [endpointDoc("pair", 2)]);
      await eventually(async () => a.state.revision >= r.revision && b.state.revision >= r.revision, { what: "both got the write" });
      // Meanwhile `wait` times out saying why the host counts as behind (not just "applied N").
      const behind = await palisadectl(t.address, ["wait", "--revision", String(r.revision), "--timeout", "1"]);
      expect(behind.code).not.toBe(0);
      expect(behind.stderr).toMatch(/behind: pair \(applied \d+: [^)]*not in sync/);
      b.close();
      expect(a.state.ended).toBe(false);
      // No further write: the host's status, applied revision included, is A's again.
      const s = await eventually(async () => {
        const h = await pair();
        return h?.driverVersion === "driver-a" && h.iptablesBackend === "nft" && h.inSync && h.lastError === "" && h.appliedRevision >= r.revision ? h : undefined;
      }, { what: "the host's status is A's again", timeoutMs: 5_000 });
      expect(s?.connected).toBe(true);
      const w = await palisadectl(t.address, ["wait", "--revision", String(r.revision), "--timeout", "5"]);
      expect(w.stderr).toBe("");
      expect(w.code).toBe(0);
    } finally {
      for (const h of open) h.close();
      await t.stop();
    }
  });

  it("a host's last apply duration in status is the last apply's, within the documented bound (10 s, DESIGN §9.3)", { timeout: 60_000 }, async () => {
    const t = await startTestController();
    // Each apply reports a different duration: 1000 + its revision, in ms.
    const h = host(t.address, "timed", { ack: true, durationMs: (rev) => 1000 + rev });
    const timed = async () => (await call(t.clients.status, t.clients.status.getStatus, {})).hosts.find((x) => x.hostname === "timed");
    try {
      await apply(t, [{ kind: "Profile", id: "p", tags: [], inbound_rules: [], outbound_rules: [] }]);
      await eventually(async () => (await timed())?.inSync, { what: "in sync" });
      let last = 0;
      for (let i = 1; i <= 3; i++) {
        last = (await apply(t, [endpointDoc("timed", i)])).revision;
        await eventually(async () => h.state.revision >= last, { what: `apply ${i} acknowledged` });
      }
      // The bound: 10 s after the record's previous write, plus up to 1 s of gathering; 2 s of slack.
      const s = await eventually(async () => {
        const x = await timed();
        return x?.lastApplyMs === 1000 + last ? x : undefined;
      }, { what: `last apply's duration ${1000 + last} ms in status`, timeoutMs: 10_000 + 1_000 + 2_000, intervalMs: 200 });
      expect(s?.appliedRevision).toBeGreaterThanOrEqual(last);
    } finally {
      h.close();
      await t.stop();
    }
  });
});
