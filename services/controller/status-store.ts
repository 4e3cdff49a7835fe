// Host and endpoint status in etcd, written in proportion to state changes,
// not to acknowledgements (DESIGN §9.3).
//
// Design note. Every driver acknowledges every model revision; writing a
// host's status per acknowledgement cost ~110 etcd revisions per model write
// at 1,000 hosts and filled etcd's quota within the hour. Instead:
//   - the replica keeps what it wants in etcd (`desired`) and what it last
//     wrote (`written`); changes only mark keys dirty;
//   - one flusher writes the dirty keys after a short coalescing delay, at
//     most once per `minIntervalMs`, in transactions of at most `txnOps`
//     operations, one at a time (bounded concurrency, bounded etcd load);
//   - applied revisions go into ONE progress key per replica
//     (status/progress/<replica>): a model write acknowledged by every host
//     costs one progress write, not one write per host;
//   - a host record is rewritten only when something an operator sees
//     changes (connected, in sync, last error, versions) — not for the
//     apply duration or the time of the last acknowledgement alone.
// Everything sits under the replica's lease: if the replica dies, its hosts'
// statuses expire with it. The lease is granted in the background: a
// replica starts and serves while etcd refuses writes (space alarm), and
// writes its statuses once etcd accepts them again.
import type { Etcd3, Lease } from "etcd3";
import type { Logger } from "pino";
import { createBackoff } from "../util/backoff.js";
import type { EndpointStatus, HostStatus } from "../gen/palisade/status/v1/status.js";
import type { Keys } from "./etcd-keys.js";
import { prefixEnd } from "./etcd-store.js";
import { encodeProgress, StatusView } from "./status-view.js";

export interface StatusStoreOptions {
  client: Etcd3;
  keys: Keys;
  logger: Logger;
  /** This replica's name: the progress key and every host record's `controller`. */
  replicaId: string;
  /** Lease TTL; default 15 s. */
  ttlSeconds?: number;
  /** Wait this long after the first change before writing (coalesces a burst of acks); default 50 ms. */
  flushDelayMs?: number;
  /** At most one flush per this interval; default 250 ms. Bounds `wait`'s extra latency. */
  minIntervalMs?: number;
  /** Operations per etcd transaction; default 64 (etcd's default --max-txn-ops is 128). */
  txnOps?: number;
}

export interface StatusStoreStats {
  flushes: number;
  transactions: number;
  keysWritten: number;
  keysDeleted: number;
  failures: number;
  pendingKeys: number;
  leased: boolean;
}

export interface StatusStore {
  /** Starts granting the lease in the background; never waits for etcd. */
  start(): void;
  /** A host's record; written only when an operator-visible field changed. */
  setHost(s: HostStatus): void;
  /** A host applied `revision` (goes into the replica's progress key). */
  setApplied(host: string, revision: number): void;
  putEndpoint(s: EndpointStatus): void;
  removeEndpoint(key: string): void;
  /** Endpoint keys this replica holds a status for, for one host. */
  endpointKeys(host: string): string[];
  endpointCount(host: string): number;
  hasEndpoint(key: string): boolean;
  /** Removes a host's statuses (its driver disconnected from us). */
  removeHost(host: string): void;
  read(): Promise<{ revision: number; hosts: HostStatus[]; endpoints: EndpointStatus[] }>;
  /** Resolves once everything changed so far has been written (or the store closed). */
  flushed(): Promise<void>;
  readonly stats: StatusStoreStats;
  close(): Promise<void>;
}

/** The fields whose change is worth an etcd write. */
function significant(s: HostStatus): string {
  const { appliedRevision: _a, lastApplyMs: _l, updatedUnixMs: _u, ...rest } = s;
  return JSON.stringify(rest);
}

export function createStatusStore(opts: StatusStoreOptions): StatusStore {
  const { client, keys, logger, replicaId } = opts;
  const ttl = opts.ttlSeconds ?? 15;
  const flushDelayMs = opts.flushDelayMs ?? 50;
  const minIntervalMs = opts.minIntervalMs ?? 250;
  const txnOps = Math.max(2, opts.txnOps ?? 64);
  const progressKey = `${keys.progress}${replicaId}`;

  /** key -> value this replica wants in etcd. */
  const desired = new Map<string, string>();
  /** key -> value last written under the current lease. */
  const written = new Map<string, string>();
  const dirty = new Set<string>();
  /** host -> significant fields of its record, to skip writes that change nothing an operator sees. */
  const shown = new Map<string, string>();
  const applied = new Map<string, number>();
  const endpointsOf = new Map<string, Set<string>>();
  const endpointShown = new Map<string, string>();
  let progressDirty = false;

  let lease: Lease | undefined;
  let leaseId = "";
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let flushing = false;
  let lastFlush = 0;
  let idle: (() => void)[] = [];
  const stats: StatusStoreStats = { flushes: 0, transactions: 0, keysWritten: 0, keysDeleted: 0, failures: 0, pendingKeys: 0, leased: false };
  const writeBackoff = createBackoff({ initialMs: 250, maxMs: 10_000 });
  let failingSince = 0;
  let failuresInEpisode = 0;

  // ---- lease -------------------------------------------------------------
  const leaseBackoff = createBackoff({ initialMs: 250, maxMs: 10_000 });
  let leaseTimer: NodeJS.Timeout | undefined;
  let leaseFailures = 0;

  function acquireLease(): void {
    if (closed || leaseTimer) return;
    const l = client.lease(ttl, { autoKeepAlive: true });
    lease = l;
    l.on("lost", (err) => {
      if (closed || l !== lease) return;
      logger.warn({ err: err.message }, "status lease lost; statuses will be rewritten under a new lease");
      lease = undefined;
      leaseId = "";
      stats.leased = false;
      // Everything we wrote went (or goes) with the lease.
      written.clear();
      for (const k of desired.keys()) dirty.add(k);
      progressDirty = true;
      retryLease();
    });
    l.grant().then(
      (id) => {
        if (closed || l !== lease) return;
        leaseId = id;
        stats.leased = true;
        if (leaseFailures) logger.info({ attempts: leaseFailures + 1 }, "status lease granted");
        leaseFailures = 0;
        leaseBackoff.reset();
        schedule();
      },
      (err: Error) => {
        if (closed || l !== lease) return;
        // One line per episode, then every tenth attempt: etcd may be down for minutes.
        if (leaseFailures++ % 10 === 0) logger.warn({ err: err.message, attempts: leaseFailures }, "cannot grant a status lease yet; statuses are kept in memory and written once etcd accepts writes");
        lease = undefined;
        retryLease();
      },
    );
  }

  function retryLease(): void {
    if (closed || leaseTimer) return;
    leaseTimer = setTimeout(() => { leaseTimer = undefined; acquireLease(); }, leaseBackoff.next());
  }

  // ---- changes -----------------------------------------------------------
  function want(key: string, value: string | undefined): void {
    if (closed) return;
    if (value === undefined) desired.delete(key);
    else desired.set(key, value);
    dirty.add(key);
    schedule();
  }

  function schedule(): void {
    if (closed || timer || flushing) return;
    if (dirty.size === 0 && !progressDirty) return settle();
    const wait = Math.max(flushDelayMs, lastFlush + minIntervalMs - Date.now());
    timer = setTimeout(() => { timer = undefined; void flush(); }, wait);
  }

  function settle(): void {
    stats.pendingKeys = dirty.size + (progressDirty ? 1 : 0);
    if (dirty.size === 0 && !progressDirty && !flushing) {
      const waiters = idle;
      idle = [];
      waiters.forEach((w) => w());
    }
  }

  // ---- the flusher -------------------------------------------------------
  type Op = { key: string; value: string } | { key: string; value: undefined };

  async function flush(): Promise<void> {
    if (closed || flushing) return;
    if (!leaseId) return; // written once the lease is granted (acquireLease schedules)
    flushing = true;
    lastFlush = Date.now();
    stats.flushes++;
    try {
      const ops: Op[] = [];
      if (progressDirty) {
        progressDirty = false;
        ops.push(applied.size ? { key: progressKey, value: encodeProgress(applied) } : { key: progressKey, value: undefined });
      }
      for (const key of dirty) {
        const value = desired.get(key);
        if (value !== undefined ? written.get(key) !== value : written.has(key)) ops.push(value !== undefined ? { key, value } : { key, value: undefined });
      }
      dirty.clear();
      for (let i = 0; i < ops.length && !closed; i += txnOps) {
        const chunk = ops.slice(i, i + txnOps);
        try {
          await writeChunk(chunk);
        } catch (err) {
          // Nothing of the chunk is assumed written: everything not yet done is dirty again.
          for (const op of ops.slice(i)) op.key === progressKey ? (progressDirty = true) : dirty.add(op.key);
          noteFailure(err as Error, ops.length - i);
          return;
        }
      }
      if (failuresInEpisode) {
        logger.info({ failures: failuresInEpisode, seconds: Math.round((Date.now() - failingSince) / 1000) }, "status writes recovered");
        failuresInEpisode = 0;
      }
      writeBackoff.reset();
    } finally {
      flushing = false;
      if (!closed && (dirty.size || progressDirty)) {
        if (failuresInEpisode) {
          clearTimeout(timer);
          timer = setTimeout(() => { timer = undefined; void flush(); }, writeBackoff.next());
        } else schedule();
      }
      settle();
    }
  }

  function noteFailure(err: Error, pending: number): void {
    stats.failures++;
    // Aggregated: one warning when writes start failing, then every tenth failure.
    if (failuresInEpisode === 0) failingSince = Date.now();
    if (failuresInEpisode++ % 10 === 0) logger.warn({ err: err.message, pendingKeys: pending, failures: failuresInEpisode }, "status writes failing; retrying with backoff");
  }

  /** One transaction: puts under our lease; deletions only of keys still under our lease. */
  async function writeChunk(chunk: Op[]): Promise<void> {
    const puts = chunk.filter((o): o is { key: string; value: string } => o.value !== undefined);
    const dels = chunk.filter((o) => o.value === undefined).map((o) => o.key);
    const putOps = puts.map((p) => ({ request_put: { key: Buffer.from(p.key), value: Buffer.from(p.value), lease: leaseId } }));
    const res = await client.kv.txn({
      // After a failover another replica may own a key now: never delete its value.
      compare: dels.map((k) => ({ key: Buffer.from(k), target: "Lease" as const, result: "Equal" as const, lease: leaseId })),
      success: [...putOps, ...dels.map((k) => ({ request_delete_range: { key: Buffer.from(k) } }))],
      failure: putOps,
    });
    stats.transactions++;
    for (const p of puts) written.set(p.key, p.value);
    stats.keysWritten += puts.length;
    if (res.succeeded) {
      for (const k of dels) written.delete(k);
      stats.keysDeleted += dels.length;
      return;
    }
    // Some key to delete is no longer ours (or already gone): delete the ones that still are.
    const owners = await client.kv.txn({ success: dels.map((k) => ({ request_range: { key: Buffer.from(k), keys_only: true } })) });
    const ours = dels.filter((_, i) => owners.responses[i]?.response_range.kvs[0]?.lease === leaseId);
    if (ours.length) {
      await client.kv.txn({
        compare: ours.map((k) => ({ key: Buffer.from(k), target: "Lease" as const, result: "Equal" as const, lease: leaseId })),
        success: ours.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
      });
      stats.transactions++;
    }
    for (const k of dels) written.delete(k);
    stats.keysDeleted += ours.length;
  }

  return {
    stats,
    start() {
      acquireLease();
    },
    setHost(s) {
      const key = `${keys.hostStatus}${s.hostname}`;
      const sig = significant(s);
      if (shown.get(s.hostname) === sig && desired.has(key)) {
        // Not worth a write alone; carried along with the next one.
        return;
      }
      shown.set(s.hostname, sig);
      want(key, JSON.stringify({ ...s, controller: replicaId, updatedUnixMs: Date.now() }));
    },
    setApplied(host, revision) {
      if ((applied.get(host) ?? -1) >= revision) return;
      applied.set(host, revision);
      progressDirty = true;
      schedule();
    },
    putEndpoint(s) {
      const host = s.hostname;
      const key = `${keys.endpointStatus}${s.endpointKey}`;
      const sig = `${s.state}|${s.detail}`;
      // A repeated report that changes nothing an operator sees is not written again.
      if (endpointShown.get(s.endpointKey) === sig && desired.has(key)) return;
      endpointShown.set(s.endpointKey, sig);
      let set = endpointsOf.get(host);
      if (!set) endpointsOf.set(host, (set = new Set()));
      set.add(s.endpointKey);
      want(key, JSON.stringify(s));
    },
    removeEndpoint(key) {
      const host = key.slice(0, key.indexOf("/"));
      endpointsOf.get(host)?.delete(key);
      endpointShown.delete(key);
      want(`${keys.endpointStatus}${key}`, undefined);
    },
    endpointKeys(host) {
      return [...(endpointsOf.get(host) ?? [])];
    },
    endpointCount(host) {
      return endpointsOf.get(host)?.size ?? 0;
    },
    hasEndpoint(key) {
      return endpointsOf.get(key.slice(0, key.indexOf("/")))?.has(key) ?? false;
    },
    removeHost(host) {
      shown.delete(host);
      want(`${keys.hostStatus}${host}`, undefined);
      for (const k of endpointsOf.get(host) ?? []) {
        endpointShown.delete(k);
        want(`${keys.endpointStatus}${k}`, undefined);
      }
      endpointsOf.delete(host);
      if (applied.delete(host)) {
        progressDirty = true;
        schedule();
      }
    },
    async read() {
      const res = await client.kv.range({ key: Buffer.from(keys.status), range_end: prefixEnd(keys.status) });
      const view = new StatusView(keys);
      for (const kv of res.kvs) view.apply(kv.key.toString(), kv.value.toString());
      return { revision: Number(res.header.revision), hosts: view.hosts(), endpoints: [...view.endpoints.values()] };
    },
    flushed() {
      if (closed || (dirty.size === 0 && !progressDirty && !flushing)) return Promise.resolve();
      return new Promise((r) => idle.push(r));
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      clearTimeout(leaseTimer);
      const waiters = idle;
      idle = [];
      waiters.forEach((w) => w());
      // Revoking the lease deletes every key still under it, and only those:
      // keys another replica rewrote after a failover are under its lease.
      await lease?.revoke().catch(() => undefined);
    },
  };
}
