// Feature gating at hello (DESIGN §6.2, §5.1): a driver whose hello lacks a
// feature the controller renders for (the set-based layout's set types, the
// flow-log chains) is refused before it receives anything, so controllers
// and drivers can be upgraded in either order. Seen from a hand-written gRPC
// client against a real controller.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../../services/contract/clients.js";
import { documentToPb } from "../../services/contract/model-wire.js";
import { DataplaneSyncServiceClient, type SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { parseDocuments } from "../../services/model/index.js";
import { eventually, palisadectl, requireBuild } from "../support/binaries.js";
import { startTestController } from "../support/controller.js";

let t: Awaited<ReturnType<typeof startTestController>>;

/** A raw client: everything the controller sends, and how the stream ended. */
function connect(hostname: string, features: string[]) {
  const client = new DataplaneSyncServiceClient(t.address, grpc.credentials.createInsecure());
  const stream = client.sync();
  const batches: SyncResponse[] = [];
  let ended: grpc.ServiceError | undefined;
  stream.on("data", (b: SyncResponse) => batches.push(b));
  stream.on("error", (e: grpc.ServiceError) => { ended = e; });
  stream.write({ message: { $case: "hello", value: { hostname, driverVersion: "old", ipv6: true, iptablesBackend: "nft", features } } });
  return {
    batches,
    ended: () => ended,
    close() { stream.cancel(); client.close(); },
  };
}

const refusedCount = async () => {
  const text = await (await fetch(`http://127.0.0.1:${t.controller.metricsPort}/metrics`)).text();
  const m = /palisade_controller_sync_refused_total\{reason="driver-features"\} (\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
};

describe("driver features at hello", () => {
  beforeAll(async () => {
    requireBuild();
    t = await startTestController({ heartbeatMs: 300, metricsListen: "127.0.0.1:0" });
  });
  afterAll(async () => { await t.stop(); });

  it("refuses a driver that announces no feature with FAILED_PRECONDITION, and sends it nothing at all", async () => {
    await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments([
      { kind: "Profile", id: "old", inbound_rules: [{}], outbound_rules: [{}] },
      { kind: "Endpoint", host: "hvold", orchestrator: "t", workload: "w", id: "e", name: "tapold", state: "active", ipv4_nets: ["198.18.9.2"], profile_ids: ["old"] },
    ]).map(documentToPb) });
    const before = await refusedCount();
    const old = connect("hvold", []);
    try {
      const err = (await eventually(async () => old.ended(), { what: "the stream to end" }))!;
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err.details).toMatch(/driver too old: lacks features \[.*set-layout.*\]; upgrade palisade-driver/);
      // Not a snapshot, not a heartbeat, not a pal-log jump: nothing.
      await new Promise((r) => setTimeout(r, 700));
      expect(old.batches).toEqual([]);
      expect(await refusedCount()).toBe(before + 1);
    } finally {
      old.close();
    }
  });

  it("a driver from before flow reports and set-layout (features absent) is refused; one announcing set-layout, ct-admit and position-layout (today's) is served", async () => {
    const today = connect("hvtoday", ["set-layout", "ct-admit", "position-layout"]);
    const none = connect("hvnone", []);
    try {
      await eventually(async () => today.batches.some((b) => b.inSync), { what: "today's driver in sync" });
      expect(today.ended()).toBeUndefined();
      const err = (await eventually(async () => none.ended(), { what: "refusal" }))!;
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(none.batches).toEqual([]);
    } finally {
      today.close();
      none.close();
    }
  });

  it("a refused host stays visible: its status record says why, `wait` counts it as behind, and a capable driver takes the record over", async () => {
    const w = await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments([
      { kind: "Profile", id: "frz", inbound_rules: [{}], outbound_rules: [{}] },
      { kind: "Endpoint", host: "hvfrozen", orchestrator: "t", workload: "w", id: "e", name: "tapf", state: "active", ipv4_nets: ["198.18.7.2"], profile_ids: ["frz"] },
    ]).map(documentToPb) });
    const record = async () => (await call(t.clients.status, t.clients.status.getStatus, {})).hosts.find((h) => h.hostname === "hvfrozen");
    const old = connect("hvfrozen", []);
    try {
      await eventually(async () => old.ended(), { what: "the refusal" });
      const r = (await eventually(async () => record(), { what: "the refused host's record" }))!;
      expect(r).toMatchObject({ connected: false, inSync: false, driverVersion: "old" });
      expect(r.lastError).toMatch(/driver too old: lacks features \[.*set-layout.*\]; upgrade palisade-driver/);
      const waited = await palisadectl(t.address, ["wait", "--revision", String(w.revision), "--timeout", "1"]);
      expect(waited.code).not.toBe(0);
      expect(waited.stderr).toMatch(/hvfrozen \(applied 0: refused by the controller: driver too old/);
    } finally {
      old.close();
    }
    // The upgraded driver connects: the record is its stream's, and `wait` returns.
    const upgraded = connect("hvfrozen", ["set-layout", "flow-log", "ct-admit", "position-layout"]);
    try {
      await eventually(async () => upgraded.batches.some((b) => b.inSync), { what: "the upgraded driver's snapshot" });
      const r = await eventually(async () => { const h = await record(); return h?.connected ? h : undefined; }, { what: "the record is the stream's" });
      expect(r!.lastError).toBe("");
    } finally {
      upgraded.close();
    }
  });

  it("a featureless second stream of a host changes nothing for the capable stream: it keeps receiving its deltas", async () => {
    const p = await call(t.clients.policy, t.clients.policy.apply, { deletes: [], documents: parseDocuments([
      { kind: "Profile", id: "two", inbound_rules: [{}], outbound_rules: [{}] },
      { kind: "Endpoint", host: "hvtwo", orchestrator: "t", workload: "w", id: "a", name: "tapa", state: "active", ipv4_nets: ["198.18.8.1"], profile_ids: ["two"] },
      { kind: "Endpoint", host: "hvtwo", orchestrator: "t", workload: "w", id: "b", name: "tapb", state: "active", ipv4_nets: ["198.18.8.2"], profile_ids: ["two"] },
    ]).map(documentToPb) });
    const good = connect("hvtwo", ["set-layout", "flow-log", "ct-admit", "position-layout"]);
    try {
      await eventually(async () => good.batches.some((b) => b.inSync && b.revision >= p.revision), { what: "snapshot" });
      const bad = connect("hvtwo", []);
      // Whatever the controller does with it (refuse it, or serve it), the capable stream must not notice.
      await eventually(async () => bad.ended() !== undefined || bad.batches.some((b) => b.inSync), { what: "the second stream answered" });
      const seen = good.batches.length;
      const del = await call(t.clients.policy, t.clients.policy.delete, {
        objects: [{ kind: { $case: "endpoint", value: { host: "hvtwo", orchestrator: "t", workload: "w", id: "b" } } }], ignoreMissing: false,
      });
      await eventually(async () => good.batches.some((b) => b.revision >= del.revision), { what: "the delete's revision" });
      const updates = good.batches.slice(seen).flatMap((b) => b.updates);
      // The active set and the position set lose exactly the deleted endpoint's (address, interface).
      const removed = updates.flatMap((u) => (u.update?.$case === "ipsetDelta" ? u.update.value.removed.map((m) => `${(u.update!.value as { name: string }).name} ${m}`) : []));
      expect(removed.filter((r) => /^pal4i-active /.test(r)).map((r) => r.split(" ")[1])).toEqual(["198.18.8.2,tapb"]);
      expect(removed.filter((r) => /^pal4ip0_/.test(r)).map((r) => r.split(" ")[1])).toEqual(["198.18.8.2,tapb"]);
      // No chain of the per-endpoint layout of earlier builds.
      expect(updates.some((u) => u.update?.$case === "chainUpdate" && /^pal-(tw|fw|td|fd)-/.test(u.update.value.name))).toBe(false);
      expect(bad.ended()?.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(bad.batches).toEqual([]);
      bad.close();
    } finally {
      good.close();
    }
  });
});
