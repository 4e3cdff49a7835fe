// A lost or compacted watch makes the feed reload the model and diff it into
// the graph, without a restart: objects deleted meanwhile disappear, changed
// ones update, and the hosts get exactly the resulting updates.
import { describe, expect, it } from "vitest";
import { CalcGraph, type HostUpdate } from "../../services/calc/index.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { EtcdStore, ModelEvent } from "../../services/controller/etcd-store.js";
import { createModelFeed } from "../../services/controller/model-feed.js";
import { SyncHub } from "../../services/controller/sync-hub.js";
import { parseDocuments, type ModelObject } from "../../services/model/index.js";
import { positionChain, positionSet, profileKey } from "../../services/calc/names.js";

const objs = (raw: unknown[]) => parseDocuments(raw);
const P = (id: string, port: number) => ({ kind: "Profile", id, tags: [id], inbound_rules: [{ protocol: "tcp", dst_ports: [port] }], outbound_rules: [] });
const E = (id: string, profiles: string[]) => ({ kind: "Endpoint", host: "h1", orchestrator: "o", workload: id, id: "e", name: `tap${id}`, state: "active", ipv4_nets: ["198.18.1.2"], profile_ids: profiles });

function fakeStore(initial: ModelObject[], revision: number) {
  const state = { objects: initial, revision, watchers: 0 };
  let onRev: ((rev: number, c: ModelEvent["change"][]) => void) | undefined;
  let onErr: ((e: Error) => void) | undefined;
  const store = {
    async loadAll() { return { revision: state.revision, objects: state.objects }; },
    async watch(_from: number, r: typeof onRev, e: typeof onErr) { state.watchers++; onRev = r; onErr = e; return { close: async () => undefined }; },
  } as unknown as EtcdStore;
  return { store, state, emit: (rev: number, c: ModelEvent["change"][]) => onRev!(rev, c), fail: (e: Error) => onErr!(e) };
}

describe("model feed resync", () => {
  it("reloads and diffs after a lost watch; the graph ends as a fresh load would", async () => {
    const f = fakeStore(objs([P("a", 80), P("b", 81), E("w1", ["a"]), E("w2", ["b"])]), 10);
    const logger = createLogger({ name: "t", level: "silent" });
    const hub = new SyncHub(logger, 60_000);
    const received: HostUpdate[] = [];
    const graph = new CalcGraph({ onHostUpdates: (_h, _r, u) => { received.push(...u); } });
    const feed = createModelFeed({ store: f.store, graph, hub, logger });
    await feed.start();
    expect(feed.revision).toBe(10);
    f.emit(11, [{ type: "put", object: objs([P("a", 8080)])[0]! }]);
    expect(feed.revision).toBe(11);
    expect(graph.getProfile("a")!.inboundRules[0]!.match.dstPorts).toEqual([{ first: 8080, last: 8080 }]);

    // While the watch is lost (e.g. compacted), b and w2 are deleted and c appears.
    f.state.objects = objs([P("a", 8080), P("c", 82), E("w1", ["a", "c"])]);
    f.state.revision = 20;
    received.length = 0;
    f.fail(new Error("mvcc: required revision has been compacted"));
    await new Promise((r) => setTimeout(r, 50));
    expect(f.state.watchers).toBe(2); // watching again, no restart
    expect(feed.revision).toBe(20);
    expect(graph.hasProfile("b")).toBe(false);
    expect(graph.getEndpoint("h1/o/w2/e")).toBeUndefined();
    expect(graph.getEndpoint("h1/o/w1/e")!.profileIds).toEqual(["a", "c"]);
    // The host was told: b's position set (w2 was its only endpoint) removed, a second position for w1's c, and c's chains added.
    expect(received.some((u) => u.type === "ipset-remove" && u.name === positionSet(0, profileKey("b"), 4))).toBe(true);
    expect(received.some((u) => u.type === "chain-update" && u.chain.name === positionChain("to", 1) && u.chain.rules.some((r) => r.includes("-g pal-pi-c")))).toBe(true);
    expect(received.some((u) => u.type === "chain-update" && u.chain.name === positionChain("to", 0) && !u.chain.rules.some((r) => r.includes("pal-pi-b")))).toBe(true);
    expect(received.some((u) => u.type === "chain-update" && u.chain.name === "pal-pi-c")).toBe(true);

    // Same final state as a graph loaded from scratch.
    const fresh = new CalcGraph({ onHostUpdates: () => undefined });
    for (const o of f.state.objects) (o.kind === "Profile" ? fresh.upsertProfile(o.profile) : fresh.upsertEndpoint(o.endpoint));
    fresh.flush(20);
    const norm = (us: HostUpdate[]) => JSON.stringify(us.map((u) => JSON.stringify(u)).sort());
    expect(norm(graph.snapshot("h1").updates)).toBe(norm(fresh.snapshot("h1").updates));
    // Replayed old revisions after the resync are ignored.
    f.emit(15, [{ type: "delete-profile", id: "a" }]);
    expect(graph.hasProfile("a")).toBe(true);
    await feed.stop();
    hub.close();
  });
});
