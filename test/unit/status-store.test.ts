// The status store's writer against a scripted etcd (DESIGN §9.3): what it
// writes, under which lease, and what it does when a lease is lost while a
// transaction is in flight, or etcd refuses writes (space alarm).
import { EventEmitter } from "node:events";
import type { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { createKeys } from "../../services/controller/etcd-keys.js";
import { createStatusStore } from "../../services/controller/status-store.js";
import { createLogger } from "../../services/runtime/logger.js";
import type { HostStatus } from "../../services/gen/palisade/status/v1/status.js";

const logger = createLogger({ name: "t", level: "silent" });
const keys = createKeys("/p");

type Txn = { compare?: unknown[]; success: Record<string, { key: Buffer; value?: Buffer; lease?: string }>[]; failure?: unknown[] };

/** An etcd stand-in: leases granted in order, transactions recorded and answered by the test. */
function scriptedEtcd() {
  const leases: (EventEmitter & { id: string })[] = [];
  const txns: { req: Txn; resolve: (r: unknown) => void; reject: (e: Error) => void }[] = [];
  const client = {
    lease() {
      const l = Object.assign(new EventEmitter(), { id: `L${leases.length + 1}` });
      leases.push(l);
      return Object.assign(l, { grant: async () => l.id, revoke: async () => undefined });
    },
    kv: {
      txn(req: Txn) {
        return new Promise((resolve, reject) => txns.push({ req, resolve, reject }));
      },
    },
  };
  const puts = (t: { req: Txn }) => t.req.success.flatMap((op) => (op.request_put ? [{ key: op.request_put.key.toString(), lease: op.request_put.lease }] : []));
  return { client: client as unknown as Etcd3, leases, txns, puts };
}

const host = (name: string): HostStatus => ({
  hostname: name, connected: true, inSync: true, appliedRevision: 1, lastError: "", lastApplyMs: 1, driverVersion: "t", iptablesBackend: "nft",
  controller: "r1", updatedUnixMs: 1, connectedUnixMs: 1,
});

const until = async (cond: () => boolean) => {
  for (const end = Date.now() + 5_000; !cond(); await new Promise((r) => setTimeout(r, 5))) if (Date.now() > end) throw new Error("timed out");
};

describe("status store", () => {
  it("rewrites under the new lease what was in flight when the old one was lost", async () => {
    const e = scriptedEtcd();
    const s = createStatusStore({ client: e.client, keys, logger, replicaId: "r1", flushDelayMs: 1, minIntervalMs: 1 });
    s.start();
    await until(() => e.leases.length === 1);
    s.setHost(host("h1"));
    await until(() => e.txns.length === 1);
    expect(e.puts(e.txns[0]!)).toEqual([{ key: "/p/status/hosts/h1", lease: "L1" }]);
    // The lease is lost while that write is in flight; a new one is granted.
    e.leases[0]!.emit("lost", new Error("keepalive failed"));
    e.txns[0]!.resolve({ succeeded: true, responses: [], header: { revision: "5" } });
    await until(() => e.txns.length === 2);
    // The record goes to etcd again, under L2: the late answer under L1 did not count as written.
    expect(e.puts(e.txns[1]!)).toContainEqual({ key: "/p/status/hosts/h1", lease: "L2" });
    await s.close();
  });

  it("under etcd's space alarm, a departed host's deletion goes through on its own", async () => {
    const e = scriptedEtcd();
    const s = createStatusStore({ client: e.client, keys, logger, replicaId: "r1", flushDelayMs: 1, minIntervalMs: 1 });
    s.start();
    await until(() => e.leases.length === 1);
    s.setHost(host("h1"));
    s.setApplied("h1", 3);
    await until(() => e.txns.length === 1);
    e.txns[0]!.resolve({ succeeded: true, responses: [], header: { revision: "5" } });
    await s.flushed();
    // h1 leaves while etcd refuses puts: the combined transaction (progress put + deletion) is refused...
    s.removeHost("h1");
    await until(() => e.txns.length === 2);
    e.txns[1]!.reject(new Error("etcdserver: mvcc: database space exceeded"));
    // ...then the deletion is checked for ownership and written alone, without any put.
    await until(() => e.txns.length === 3);
    expect(e.txns[2]!.req.success.every((op) => op.request_range)).toBe(true);
    e.txns[2]!.resolve({ succeeded: true, header: { revision: "6" }, responses: [{ response_range: { kvs: [{ lease: "L1" }] } }, { response_range: { kvs: [{ lease: "L1" }] } }] });
    await until(() => e.txns.length === 4);
    const del = e.txns[3]!.req;
    // Deletions only (the host's record, and the progress key now that no host is left), no put.
    expect(new Set(del.success.map((op) => Object.keys(op)[0]))).toEqual(new Set(["request_delete_range"]));
    expect(del.success.map((op) => op.request_delete_range!.key.toString())).toContain("/p/status/hosts/h1");
    await s.close();
  });

  it("a host's apply duration alone is written at most once per applyRefreshMs, and the last one always arrives within that bound", async () => {
    const e = scriptedEtcd();
    const refreshMs = 1_000;
    const s = createStatusStore({ client: e.client, keys, logger, replicaId: "r1", flushDelayMs: 1, minIntervalMs: 1, applyRefreshMs: refreshMs });
    s.start();
    await until(() => e.leases.length === 1);
    /** Every put of h1's record as written: (time, lastApplyMs, inSync); transactions answered at once. */
    const records: { at: number; ms: number; inSync: boolean }[] = [];
    let answered = 0;
    const answer = setInterval(() => {
      for (; answered < e.txns.length; answered++) {
        const t = e.txns[answered]!;
        for (const op of t.req.success) {
          if (op.request_put?.key.toString() === "/p/status/hosts/h1") {
            const v = JSON.parse(op.request_put.value!.toString()) as HostStatus;
            records.push({ at: Date.now(), ms: v.lastApplyMs, inSync: v.inSync });
          }
        }
        t.resolve({ succeeded: true, responses: [], header: { revision: "5" } });
      }
    }, 2);
    try {
      const t0 = Date.now();
      s.setHost({ ...host("h1"), lastApplyMs: 10 });
      await until(() => records.length === 1);
      // Several applies in a row: only their durations change.
      for (const ms of [11, 12, 13]) {
        s.setHost({ ...host("h1"), lastApplyMs: ms });
        await new Promise((r) => setTimeout(r, 20));
      }
      // The last one's duration arrives, no sooner than refreshMs after the previous write, and no later than the bound (+ 1 s of gathering and slack).
      await until(() => records.at(-1)!.ms === 13);
      expect(records).toHaveLength(2);
      expect(records[1]!.at - t0).toBeGreaterThanOrEqual(refreshMs);
      expect(records[1]!.at - t0).toBeLessThan(refreshMs + 1_000 + 1_000);
      // A duration pending when something visible changes goes with that write, at once.
      s.setHost({ ...host("h1"), lastApplyMs: 14 });
      const before = records.length;
      s.setHost({ ...host("h1"), lastApplyMs: 14, inSync: false, lastError: "boom" });
      await until(() => records.length === before + 1);
      expect(records.at(-1)).toMatchObject({ ms: 14, inSync: false });
      expect(records.at(-1)!.at - records[1]!.at).toBeLessThan(refreshMs);
      // Nothing more is due: no further writes.
      await new Promise((r) => setTimeout(r, refreshMs + 500));
      expect(records).toHaveLength(before + 1);
    } finally {
      clearInterval(answer);
      await s.close();
    }
  });
});
