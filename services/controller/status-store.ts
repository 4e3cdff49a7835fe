// Host and endpoint status in etcd, written in proportion to state changes,
// not to acknowledgements (DESIGN §9.3).
//
// Design note. Every driver acknowledges every model revision; writing a
// host's status per acknowledgement cost ~110 etcd revisions per model write
// at 1,000 hosts and filled etcd's quota within the hour. Instead:
//   - the replica keeps what it wants in etcd (`desired`) and what it last
//     wrote (`written`); changes only mark keys dirty;
//   - one flusher writes the dirty keys after a short coalescing delay, at
//     most once per interval — `minIntervalMs`, longer as the progress key
//     grows, so that it costs etcd at most `progressBytesPerSecond` —, in
//     transactions of at most `txnOps`
//     operations, one at a time (bounded concurrency, bounded etcd load);
//   - applied revisions go into ONE progress key per replica
//     (status/progress/<replica>): a model write acknowledged by every host
//     costs one progress write, not one write per host;
//   - a host record is rewritten only when something an operator sees
//     changes (connected, in sync, last error, versions) — not for the
//     time of the last acknowledgement alone; a new apply duration alone
//     rides along with the next write of the record, or is written on its
//     own at most once per `applyRefreshMs` per host (10 s), so that
//     `status` shows the last apply's duration at most that much late.
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
import { classifyEtcdError } from "./etcd-errors.js";

export interface StatusStoreOptions {
  client: Etcd3;
  keys: Keys;
  logger: Logger;
  /** This replica's name: the progress key and every host record's `controller`. */
  replicaId: string;
  /** Lease TTL; default 15 s. */
  ttlSeconds?: number;
  /** Wait this long after the first change before writing (coalesces a burst of acks); default 20 ms. */
  flushDelayMs?: number;
  /** At least this long between flushes; default 50 ms. */
  minIntervalMs?: number;
  /** How long a flush of progress waits for hosts still behind the newest revision; default 250 ms. */
  progressWaitMs?: number;
  /**
   * Budget of the progress key's rewrites: the interval between flushes grows
   * with its size (~25 bytes per host) — 250 ms at 1,000 hosts with the
   * default 100 KiB/s. Small clouds see acknowledgements in ~20–50 ms.
   */
  progressBytesPerSecond?: number;
  /** Operations per etcd transaction; default 64 (etcd's default --max-txn-ops is 128). */
  txnOps?: number;
  /**
   * A host record whose apply duration (`lastApplyMs`) alone changed is
   * rewritten no sooner than this after its previous write; default 10 s.
   * Refreshes due within a second of each other share one flush.
   */
  applyRefreshMs?: number;
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
  /**
   * A host's record; written when an operator-visible field changed. A new
   * apply duration alone is written with the next such change, or at most
   * `applyRefreshMs` after the record's previous write.
   */
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
  /** etcd's --max-txn-ops as detected: transactions stay within it. */
  limitTxnOps(limit: number): void;
  /**
   * Whether this replica's statuses reach etcd: undefined when they do, else
   * why not (no lease — etcd refuses writes —, or writes failing for a while).
   * Readers must not take missing statuses for absent hosts meanwhile.
   */
  problem(): string | undefined;
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
  const flushDelayMs = opts.flushDelayMs ?? 20;
  /** Once progress is complete: written almost at once. */
  const completeDelayMs = 5;
  const progressWaitMs = opts.progressWaitMs ?? 250;
  const minIntervalMs = opts.minIntervalMs ?? 50;
  const progressBytesPerSecond = opts.progressBytesPerSecond ?? 100 * 1024;
  let lastProgressBytes = 0;
  const interval = () => Math.max(minIntervalMs, Math.min(5_000, (lastProgressBytes / progressBytesPerSecond) * 1000));
  let txnOps = Math.max(2, opts.txnOps ?? 64);
  const progressKey = `${keys.progress}${replicaId}`;
  const applyRefreshMs = opts.applyRefreshMs ?? 10_000;
  /** Refreshes due within this of each other share one flush (at most one refresh flush per second). */
  const refreshSlackMs = Math.min(1_000, applyRefreshMs);

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
  /** host -> the apply duration in its last queued record, and when that record was queued. */
  const applyQueued = new Map<string, { ms: number; at: number }>();
  /** host -> when its record is due for a refresh (only its apply duration changed). */
  const refreshDue = new Map<string, number>();
  let refreshTimer: NodeJS.Timeout | undefined;
  let refreshAt = 0;

  let lease: Lease | undefined;
  let leaseId = "";
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = 0;
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
      // etcd3 also says "lost" when the grant itself fails: that is the
      // grant's rejection below (aggregated), not a lease we had.
      if (closed || l !== lease || leaseId === "") return;
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

  // Progress is "complete" when every host of this replica has acknowledged
  // the newest revision any of them has: that is the moment to write it (one
  // progress write per model write). Until then the flush waits for the
  // stragglers, at most `progressWaitMs`.
  let maxRevision = 0;
  let atMax = 0;
  let progressSince = 0;
  const progressComplete = () => atMax === applied.size;

  function schedule(): void {
    if (closed || flushing) return;
    if (dirty.size === 0 && !progressDirty) return settle();
    const now = Date.now();
    const delay = dirty.size === 0 && progressDirty
      ? (progressComplete() ? completeDelayMs : Math.max(completeDelayMs, progressSince + progressWaitMs - now))
      : flushDelayMs;
    const at = Math.max(now + delay, lastFlush + interval());
    if (timer && timerAt <= at) return;
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(() => { timer = undefined; void flush(); }, at - now);
  }

  function settle(): void {
    stats.pendingKeys = dirty.size + (progressDirty ? 1 : 0);
    if (dirty.size === 0 && !progressDirty && !flushing) {
      const waiters = idle;
      idle = [];
      waiters.forEach((w) => w());
    }
  }

  // ---- apply-duration refreshes -------------------------------------------
  function hostKey(host: string): string {
    return `${keys.hostStatus}${host}`;
  }

  /** The host's record (whatever `desired` holds now) goes out with the next flush. */
  function queueRecord(host: string, applyMs: number): void {
    refreshDue.delete(host);
    applyQueued.set(host, { ms: applyMs, at: Date.now() });
    dirty.add(hostKey(host));
  }

  function armRefresh(due: number): void {
    if (closed || (refreshTimer && refreshAt <= due)) return;
    clearTimeout(refreshTimer);
    refreshAt = due;
    refreshTimer = setTimeout(runRefreshes, Math.max(0, due - Date.now()));
    refreshTimer.unref();
  }

  function runRefreshes(): void {
    refreshTimer = undefined;
    if (closed) return;
    const now = Date.now();
    let next = Infinity;
    for (const [host, due] of refreshDue) {
      if (due > now) { next = Math.min(next, due); continue; }
      const rec = desired.get(hostKey(host));
      if (rec !== undefined) queueRecord(host, (JSON.parse(rec) as HostStatus).lastApplyMs);
      else refreshDue.delete(host);
    }
    schedule();
    // Later ones are gathered a little: at most one refresh flush per `refreshSlackMs`.
    if (next !== Infinity) armRefresh(Math.max(next, now + refreshSlackMs));
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
        const value = applied.size ? encodeProgress(applied) : undefined;
        lastProgressBytes = value?.length ?? 0;
        ops.push(value !== undefined ? { key: progressKey, value } : { key: progressKey, value: undefined });
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
          const cls = classifyEtcdError(err);
          // Under etcd's space alarm puts are refused but deletions go
          // through: a host that left must not look connected for as long
          // as the alarm lasts. Its deletions are written on their own.
          if (cls === "nospace") {
            const dels = ops.slice(i).filter((o) => o.value === undefined);
            for (let j = 0; j < dels.length; j += txnOps) {
              const part = dels.slice(j, j + txnOps);
              await deleteStillOurs(part.map((o) => o.key), leaseId).then(
                () => { for (const o of part) ops.splice(ops.indexOf(o), 1); },
                () => undefined,
              );
            }
          }
          // etcd allows fewer operations per transaction than we used: smaller chunks from now on.
          if (cls === "too-many-ops" && txnOps > 2) txnOps = Math.max(2, Math.floor(txnOps / 2));
          // Nothing else of the chunk is assumed written: everything not yet done is dirty again.
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
          const backoffMs = writeBackoff.next();
          timerAt = Date.now() + backoffMs;
          timer = setTimeout(() => { timer = undefined; void flush(); }, backoffMs);
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
  /**
   * One transaction: puts under our lease; deletions only of keys still under
   * our lease. Everything is done against the lease the chunk started with:
   * if that lease is lost meanwhile, nothing of the chunk counts as written
   * (the lost-lease handler made every wanted key dirty again, and an answer
   * arriving after it must not undo that).
   */
  async function writeChunk(chunk: Op[]): Promise<void> {
    const lid = leaseId;
    const current = () => lid === leaseId && !closed;
    const puts = chunk.filter((o): o is { key: string; value: string } => o.value !== undefined);
    const dels = chunk.filter((o) => o.value === undefined).map((o) => o.key);
    const putOps = puts.map((p) => ({ request_put: { key: Buffer.from(p.key), value: Buffer.from(p.value), lease: lid } }));
    const res = await client.kv.txn({
      // After a failover another replica may own a key now: never delete its value.
      compare: dels.map((k) => ({ key: Buffer.from(k), target: "Lease" as const, result: "Equal" as const, lease: lid })),
      success: [...putOps, ...dels.map((k) => ({ request_delete_range: { key: Buffer.from(k) } }))],
      failure: putOps,
    });
    stats.transactions++;
    if (!current()) return;
    for (const p of puts) written.set(p.key, p.value);
    stats.keysWritten += puts.length;
    if (res.succeeded) {
      for (const k of dels) written.delete(k);
      stats.keysDeleted += dels.length;
      return;
    }
    await deleteStillOurs(dels, lid);
  }

  /** Deletes those of `dels` still under lease `lid` (some may be another replica's by now, or gone). */
  async function deleteStillOurs(dels: string[], lid: string): Promise<void> {
    const owners = await client.kv.txn({ success: dels.map((k) => ({ request_range: { key: Buffer.from(k), keys_only: true } })) });
    const ours = dels.filter((_, i) => owners.responses[i]?.response_range.kvs[0]?.lease === lid);
    if (ours.length) {
      await client.kv.txn({
        compare: ours.map((k) => ({ key: Buffer.from(k), target: "Lease" as const, result: "Equal" as const, lease: lid })),
        success: ours.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
      });
      stats.transactions++;
    }
    if (lid !== leaseId) return;
    for (const k of dels) written.delete(k);
    stats.keysDeleted += ours.length;
  }

  return {
    stats,
    start() {
      acquireLease();
    },
    setHost(s) {
      if (closed) return;
      const host = s.hostname;
      const key = hostKey(host);
      const sig = significant(s);
      const value = JSON.stringify({ ...s, controller: replicaId, updatedUnixMs: Date.now() });
      if (shown.get(host) === sig && desired.has(key)) {
        // Nothing an operator sees changed: kept, and carried along with
        // the record's next write (or a lease's rewrite).
        desired.set(key, value);
        if (dirty.has(key)) applyQueued.set(host, { ms: s.lastApplyMs, at: applyQueued.get(host)?.at ?? Date.now() });
        else if (applyQueued.get(host)?.ms !== s.lastApplyMs && !refreshDue.has(host)) {
          // Only the apply duration changed: written on its own at most once per applyRefreshMs.
          const due = (applyQueued.get(host)?.at ?? 0) + applyRefreshMs;
          refreshDue.set(host, due);
          armRefresh(due);
        }
        return;
      }
      shown.set(host, sig);
      want(key, value);
      queueRecord(host, s.lastApplyMs);
    },
    setApplied(host, revision) {
      const before = applied.get(host);
      if ((before ?? -1) >= revision) return;
      applied.set(host, revision);
      if (revision > maxRevision) { maxRevision = revision; atMax = 1; }
      else if (revision === maxRevision) atMax++;
      if (!progressDirty) progressSince = Date.now();
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
    limitTxnOps(limit) {
      txnOps = Math.max(2, Math.min(txnOps, limit));
    },
    problem() {
      if (!stats.leased) return "this replica holds no status lease (etcd refuses writes or is unreachable)";
      if (failuresInEpisode > 0 && Date.now() - failingSince > 5_000) return `this replica's status writes have failed for ${Math.round((Date.now() - failingSince) / 1000)} s`;
      return undefined;
    },
    removeHost(host) {
      shown.delete(host);
      applyQueued.delete(host);
      refreshDue.delete(host);
      want(`${keys.hostStatus}${host}`, undefined);
      for (const k of endpointsOf.get(host) ?? []) {
        endpointShown.delete(k);
        want(`${keys.endpointStatus}${k}`, undefined);
      }
      endpointsOf.delete(host);
      const was = applied.get(host);
      if (applied.delete(host)) {
        if (was === maxRevision) atMax--;
        if (atMax <= 0) {
          // The host at the newest revision left: recount (rare).
          maxRevision = Math.max(0, ...applied.values());
          atMax = [...applied.values()].filter((r) => r === maxRevision).length;
        }
        if (!progressDirty) progressSince = Date.now();
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
      clearTimeout(refreshTimer);
      const waiters = idle;
      idle = [];
      waiters.forEach((w) => w());
      // Revoking the lease deletes every key still under it, and only those:
      // keys another replica rewrote after a failover are under its lease.
      await lease?.revoke().catch(() => undefined);
    },
  };
}
