// Controller -> driver streaming without gRPC: chunking under the message
// limit, per-stream coalescing for a slow driver, reset to a snapshot.
import { describe, expect, it } from "vitest";
import { packBatches, MAX_BATCH_BYTES, MAX_MEMBERS_PER_UPDATE, updateFromPb } from "../../services/contract/sync-wire.js";
import { CalcGraph, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import { HostStream, RESET_WEIGHT, SyncHub, type ResponseWriter } from "../../services/controller/sync-hub.js";
import { SyncResponse } from "../../services/gen/palisade/sync/v1/sync.js";
import { DesiredState } from "../../services/driver/sync/desired-state.js";
import { parseDocuments } from "../../services/model/index.js";

const logger = createLogger({ name: "t", level: "silent" });

describe("packBatches", () => {
  it("splits a 200,000-member set into an update plus deltas, every message far below 4 MiB, order kept", () => {
    const members = Array.from({ length: 200_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const rules = Array.from({ length: 2000 }, (_, i) => `-p tcp -m multiport --dports ${i} -j DROP`);
    const updates: HostUpdate[] = [
      { type: "ipset-update", name: "pal4t-big", family: 4, members },
      { type: "chain-update", chain: { table: "filter", family: 4, name: "pal-pi-big", rules } },
    ];
    const msgs = packBatches(7, updates, { snapshotStart: true, inSync: true });
    expect(msgs.length).toBeGreaterThan(1);
    for (const m of msgs) {
      const bytes = SyncResponse.encode(m).finish().length;
      expect(bytes).toBeLessThan(2 * MAX_BATCH_BYTES);
      expect(bytes).toBeLessThan(4 * 1024 * 1024);
      expect(m.revision).toBe(7);
    }
    expect(msgs[0]!.snapshotStart).toBe(true);
    expect(msgs.filter((m) => m.snapshotStart)).toHaveLength(1);
    expect(msgs.at(-1)!.inSync).toBe(true);
    expect(msgs.filter((m) => m.inSync)).toHaveLength(1);
    // Every message but the last says more of this revision follows.
    expect(msgs.map((m) => m.partial)).toEqual([...msgs.slice(1).map(() => true), false]);
    // Reassembled by the driver, nothing is lost and the chain comes after the set.
    const d = new DesiredState();
    const flat = msgs.flatMap((m) => m.updates.map(updateFromPb)).filter((u) => u !== undefined);
    expect(flat[0]!.type).toBe("ipset-update");
    expect((flat[0] as { members: string[] }).members).toHaveLength(MAX_MEMBERS_PER_UPDATE);
    expect(flat.at(-1)!.type).toBe("chain-update");
    d.apply(flat);
    expect(d.sets.get("pal4t-big")!.members.size).toBe(200_000);
    expect(d.chains.get("4:pal-pi-big")!.rules).toHaveLength(2000);
  });
});

/** A gRPC-like writer whose buffer is "full" until drain() is called. */
function slowWriter() {
  const sent: SyncResponse[] = [];
  let full = false;
  let onDrain: (() => void) | undefined;
  const w: ResponseWriter & { sent: SyncResponse[]; block(): void; drain(): void } = {
    sent,
    write(m) { sent.push(m); return !full; },
    once(_e, fn) { onDrain = fn; },
    block() { full = true; },
    drain() { full = false; const f = onDrain; onDrain = undefined; f?.(); },
  };
  return w;
}

const profile = (port: number) => parseDocuments([{ kind: "Profile", id: "p", tags: ["t"], inbound_rules: [{ protocol: "tcp", src_tag: "t", dst_ports: [port] }], outbound_rules: [] }])[0]!;

describe("HostStream", () => {
  function setup(resetWeight?: number) {
    const hub = new SyncHub(logger);
    const graph = new CalcGraph(hub);
    const p = profile(1);
    if (p.kind === "Profile") graph.upsertProfile(p.profile);
    const ep = parseDocuments([{ kind: "Endpoint", host: "h", orchestrator: "o", workload: "w", id: "e", name: "tapx", state: "active", ipv4_nets: ["198.18.1.2"], profile_ids: ["p"] }])[0]!;
    if (ep.kind === "Endpoint") graph.upsertEndpoint(ep.endpoint);
    graph.flush(1);
    let resets = 0;
    const w = slowWriter();
    const stream = new HostStream("h", w, graph, logger, () => resets++, resetWeight);
    hub.attach(stream);
    return { hub, graph, w, stream, resets: () => resets };
  }

  it("starts with a snapshot, then coalesces while the driver is slow: fewer, newer updates", () => {
    const { graph, w, stream } = setup();
    expect(w.sent[0]!.snapshotStart).toBe(true);
    expect(w.sent.at(-1)!.inSync).toBe(true);
    const afterSnapshot = w.sent.length;
    w.block();
    w.write(w.sent[0]!); // make the stream see a full buffer on its next write
    for (let i = 2; i <= 500; i++) {
      const p = profile(1000 + i);
      if (p.kind === "Profile") graph.upsertProfile(p.profile);
      graph.flush(i);
    }
    // 499 revisions while blocked: at most one more batch was written before blocking,
    // and the outbox holds one entry per key (the profile's chains), not 499.
    expect(w.sent.length - afterSnapshot).toBeLessThanOrEqual(2);
    expect(stream.queueDepth).toBeLessThanOrEqual(4);
    w.drain();
    const last = w.sent.at(-1)!;
    expect(last.revision).toBe(500);
    const rules = last.updates.flatMap((u) => (u.update?.$case === "chainUpdate" ? u.update.value.rules : []));
    expect(rules.join(" ")).toContain("--dports 1500");
    expect(rules.join(" ")).not.toContain("--dports 1499");
  });

  it("resets a driver too far behind to a fresh snapshot (memory stays bounded)", () => {
    // A low threshold (default RESET_WEIGHT) keeps the test small.
    expect(RESET_WEIGHT).toBeGreaterThan(100_000);
    const { graph, w, stream, resets } = setup(2_000);
    w.block();
    w.write(w.sent[0]!);
    // Churn the tag set host h uses: pending weight grows past the threshold.
    for (let i = 0; i < 30; i++) {
      const eps = parseDocuments(Array.from({ length: 100 }, (_, k) => ({
        kind: "Endpoint", host: `other${i}`, orchestrator: "o", workload: `w${k}`, id: "e", name: `tap${k}`, state: "active",
        ipv4_nets: [`10.${i & 255}.${k >> 8}.${k & 255}`], profile_ids: ["p"],
      })));
      for (const e of eps) if (e.kind === "Endpoint") graph.upsertEndpoint(e.endpoint);
      graph.flush(10 + i);
    }
    expect(resets()).toBeGreaterThanOrEqual(1);
    expect(stream.queueDepth).toBe(0);
    const before = w.sent.length;
    w.drain();
    const fresh = w.sent.slice(before);
    expect(fresh[0]!.snapshotStart).toBe(true);
    expect(fresh.at(-1)!.inSync).toBe(true);
  });
});
