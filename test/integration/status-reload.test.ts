// The status feed's (re)load (DESIGN §9.3, issue #19): events etcd delivers
// while the view is being loaded — between its first watch's creation and
// the end of the load — all reach WatchStatus, and a load that fails half-way
// leaves no watch behind.
//
// The gap is made wide and deterministic: the etcd client handed to the
// status service is the real one, except that the *second* watch a load
// creates is held back (its "connected" is delivered late) while this test
// writes status keys and the revision key. etcd3 advances a watcher's start
// revision as events arrive, whether or not anyone listens, so code that
// attaches its listeners only after both watches exist loses those writes
// for good.
import * as grpc from "@grpc/grpc-js";
import { Etcd3, type Watcher } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { createClients } from "../../services/contract/clients.js";
import { createEtcdStore } from "../../services/controller/etcd-store.js";
import { createStatusService } from "../../services/controller/status-service.js";
import { createStatusStore } from "../../services/controller/status-store.js";
import { StatusServiceService, type HostStatus, type WatchStatusResponse } from "../../services/gen/palisade/status/v1/status.js";
import { bindServer } from "../../services/runtime/grpc-server.js";
import { createLogger } from "../../services/runtime/logger.js";
import { eventually, uniqueName } from "../support/binaries.js";

const logger = createLogger({ name: "status-reload", level: process.env.PALISADE_TEST_LOG ?? "silent" });

/** What happens to the second watch of the next load. */
type Gate = { mode: "delay"; during: () => Promise<void> } | { mode: "fail" };

/**
 * The real etcd client, with every watch tracked (cancelled or not) and the
 * second watch created after `arm()` gated: its "connected" is delivered only
 * after `during()` has run ("delay"), or replaced by an error ("fail").
 */
function gatedClient(real: Etcd3) {
  const tracked: { w: Watcher; cancelled: boolean }[] = [];
  let gate: Gate | undefined;
  let seen = 0;
  const track = (w: Watcher): Watcher => {
    const entry = { w, cancelled: false };
    tracked.push(entry);
    const cancel = w.cancel.bind(w);
    w.cancel = () => { entry.cancelled = true; return cancel(); };
    const g = gate && ++seen === 2 ? gate : undefined;
    if (g) {
      gate = undefined;
      const emit = w.emit.bind(w);
      w.emit = (event: string | symbol, ...args: unknown[]): boolean => {
        if (event !== "connected") return emit(event, ...args);
        if (g.mode === "fail") return emit("error", new Error("test: second watch refused"));
        void g.during().then(() => emit(event, ...args));
        return true;
      };
    }
    return w;
  };
  const client = new Proxy(real, {
    get(target, p) {
      if (p === "watch") {
        return () => new Proxy(target.watch(), {
          // create() calls this.watcher(): through the proxy, so both paths are tracked.
          get: (b, q, receiver) => (q === "watcher" ? () => track(b.watcher()) : Reflect.get(b, q, receiver)),
        });
      }
      const v = Reflect.get(target, p, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    client,
    tracked,
    arm(g: Gate) { gate = g; seen = 0; },
    get live() { return tracked.filter((t) => !t.cancelled).map((t) => t.w); },
  };
}

const record = (hostname: string): HostStatus => ({
  hostname, connected: true, inSync: true, appliedRevision: 1, lastError: "", lastApplyMs: 1, driverVersion: "t", iptablesBackend: "nft",
  controller: "r1", updatedUnixMs: 1, connectedUnixMs: 1,
});

describe("status feed (re)load", () => {
  let etcd: Etcd3;
  let seq = 0;
  beforeAll(() => { etcd = new Etcd3({ hosts: [inject("etcdUrl")] }); });
  afterAll(() => etcd.close());

  async function setup() {
    const prefix = `/${uniqueName("sr")}-${process.pid}-${seq++}`;
    const gated = gatedClient(etcd);
    const store = createEtcdStore({ client: etcd, prefix, logger });
    const status = createStatusStore({ client: etcd, keys: store.keys, logger, replicaId: "r1" });
    const svc = createStatusService({ client: gated.client, store, status, logger });
    const { close, ...handlers } = svc;
    const server = new grpc.Server();
    server.addService(StatusServiceService, handlers);
    const port = await bindServer(server, "127.0.0.1:0");
    const clients = createClients(`127.0.0.1:${port}`);
    /** Puts host records and touches the revision key; resolves once etcd delivered them (to anyone watching). */
    const write = async (names: string[]): Promise<number> => {
      for (const n of names) await etcd.put(`${store.keys.hostStatus}${n}`).value(JSON.stringify(record(n)));
      const r = await etcd.put(store.keys.revision).value("x").exec();
      // Long enough for the events to reach the gated client's open watch.
      await new Promise((res) => setTimeout(res, 300));
      return Number(r.header.revision);
    };
    const streams: grpc.ClientReadableStream<WatchStatusResponse>[] = [];
    /** A WatchStatus session as `palisadectl status -w` keeps it. */
    const watch = () => {
      const s = clients.status.watchStatus({});
      streams.push(s);
      const seen = { hosts: new Map<string, HostStatus>(), modelRevision: 0, snapshots: 0, error: undefined as grpc.ServiceError | undefined };
      s.on("data", (m: WatchStatusResponse) => {
        if (m.snapshot) { seen.hosts.clear(); seen.snapshots++; }
        for (const h of m.hosts) seen.hosts.set(h.hostname, h);
        for (const h of m.removedHosts) seen.hosts.delete(h);
        seen.modelRevision = m.modelRevision;
      });
      s.on("error", (e: grpc.ServiceError) => { seen.error = e; });
      return seen;
    };
    return {
      gated, store, write, watch,
      async stop() {
        for (const s of streams) s.cancel();
        clients.close();
        await close();
        await status.close();
        server.forceShutdown();
        await etcd.delete().prefix(prefix);
      },
    };
  }

  it("events written while the view first loads (between its two watches) reach WatchStatus", async () => {
    const t = await setup();
    try {
      let revision = 0;
      t.gated.arm({ mode: "delay", during: async () => { revision = await t.write(["gap0", "gap1", "gap2"]); } });
      const seen = t.watch();
      await eventually(async () => revision > 0, { what: "the gated writes" });
      await eventually(async () => ["gap0", "gap1", "gap2"].every((h) => seen.hosts.has(h)) && seen.modelRevision >= revision, {
        what: `hosts written during the load, and model revision ${revision} (have ${[...seen.hosts.keys()].join(",") || "none"}, revision ${seen.modelRevision})`,
        timeoutMs: 5_000,
      });
      expect(seen.error).toBeUndefined();
    } finally {
      await t.stop();
    }
  });

  it("events written during a reload (a lost watch) reach WatchStatus", async () => {
    const t = await setup();
    try {
      const seen = t.watch();
      await eventually(async () => seen.snapshots === 1 && t.gated.live.length === 2, { what: "first snapshot" });
      let revision = 0;
      t.gated.arm({ mode: "delay", during: async () => { revision = await t.write(["reload0", "reload1", "reload2"]); } });
      // The status watch is lost (etcd cancelled it, say): the feed reloads.
      t.gated.live[0]!.emit("error", new Error("test: watch lost"));
      await eventually(async () => revision > 0 && seen.snapshots >= 2, { what: "the gated writes and a fresh snapshot" });
      await eventually(async () => ["reload0", "reload1", "reload2"].every((h) => seen.hosts.has(h)) && seen.modelRevision >= revision, {
        what: `hosts written during the reload, and model revision ${revision} (have ${[...seen.hosts.keys()].join(",") || "none"}, revision ${seen.modelRevision})`,
        timeoutMs: 5_000,
      });
      // The lost watches were let go; exactly the reloaded pair remains.
      expect(t.gated.live).toHaveLength(2);
    } finally {
      await t.stop();
    }
  });

  it("a load whose second watch fails leaves no watch behind, and the next session loads", async () => {
    const t = await setup();
    try {
      t.gated.arm({ mode: "fail" });
      const first = t.watch();
      await eventually(async () => first.error !== undefined, { what: "the first session refused" });
      expect(first.error!.code).toBe(grpc.status.UNAVAILABLE);
      // Nothing of the failed load is still watching (it would leak, with no listener for its errors).
      expect(t.gated.live).toHaveLength(0);
      await t.write(["after"]);
      const second = t.watch();
      await eventually(async () => second.hosts.has("after"), { what: "the next session's snapshot" });
      expect(t.gated.live).toHaveLength(2);
    } finally {
      await t.stop();
    }
  });
});
