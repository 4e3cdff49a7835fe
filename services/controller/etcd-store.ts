// The model in etcd: validated writes as single transactions, reads, and a
// watch from a revision. etcd is the source of truth; controllers hold only
// caches derived from it.
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import type { Logger } from "pino";
import { ApiError } from "../contract/errors.js";
import {
  ValidationError, describe, endpointKeyString, objectKey, parseDocument, toDocument, validateObject,
  type EndpointKey, type ModelObject,
} from "../model/index.js";
import { createKeys, type Keys } from "./etcd-keys.js";
import type { ObjectRef } from "../contract/object-ref.js";

export type { ObjectRef };
import { REQUIRED_TXN_OPS, classifyEtcdError, toApiError, type EtcdErrorClass, type EtcdRequestSize } from "./etcd-errors.js";
import { createBackoff, sleep } from "../util/backoff.js";


export interface ModelEvent {
  revision: number;
  /** Upserted object, or deletion of a key. */
  change: { type: "put"; object: ModelObject } | { type: "delete-profile"; id: string } | { type: "delete-endpoint"; key: string };
}

export interface WriteResult {
  revision: number;
  changed: number;
  /** Of those, objects removed (deletions). */
  deleted: number;
}

/** A deletion inside an apply: `expectedRevision` as for documents (0 = must not exist). */
export interface Deletion {
  ref: ObjectRef;
  expectedRevision?: number;
}

const MAX_OPTIMISTIC_RETRIES = 5;

export interface EtcdStore {
  readonly keys: Keys;
  /** Writes `objects` and removes `deletions` in one transaction; nothing on any error. */
  apply(objects: ModelObject[], expect?: Map<string, number>, deletions?: Deletion[]): Promise<WriteResult>;
  delete(refs: ObjectRef[], ignoreMissing: boolean): Promise<WriteResult>;
  getObject(ref: ObjectRef): Promise<{ object?: ModelObject; modRevision: number; revision: number }>;
  list(kind: "Profile" | "Endpoint", host?: string): Promise<{ objects: { object: ModelObject; modRevision: number }[]; revision: number }>;
  modelRevision(): Promise<number>;
  /** All model objects at one revision (for the initial load and resyncs). */
  loadAll(): Promise<{ revision: number; objects: ModelObject[] }>;
  /**
   * Finds etcd's --max-txn-ops with read-only transactions (writes nothing):
   * REQUIRED_TXN_OPS if accepted, else the largest accepted count. Larger
   * batches are then refused up front with a clear message.
   */
  detectTxnOpsLimit(): Promise<{ limit: number; sufficient: boolean }>;
  /**
   * Puts the revision key back if a delete under the space alarm removed it
   * (and model objects exist); true when it is present afterwards.
   */
  repairRevisionKey(): Promise<boolean>;
  /** Stops background work (the revision key repair). */
  close(): void;
  /** Watches model changes after `fromRevision`; one callback per etcd revision. */
  watch(fromRevision: number, onRevision: (revision: number, events: ModelEvent["change"][]) => void, onError: (err: Error) => void): Promise<{ close(): Promise<void> }>;
}

function describeRef(r: ObjectRef): string {
  return r.kind === "Profile" ? `Profile ${r.id}` : `Endpoint ${endpointKeyString(r.key)}`;
}

function refKey(keys: Keys, r: ObjectRef): string {
  return r.kind === "Profile" ? keys.profile(r.id) : keys.endpoint(r.key);
}

function objectEtcdKey(keys: Keys, o: ModelObject): string {
  return o.kind === "Profile" ? keys.profile(o.profile.id) : keys.endpoint(o.endpoint);
}

export function createEtcdStore(opts: {
  client: Etcd3; prefix: string; logger: Logger;
  /** Counts etcd failures by class (metrics). */
  onEtcdError?: (cls: EtcdErrorClass) => void;
  /**
   * The model revision while the revision key is absent (only after a
   * deletion under the space alarm, until it is put back): the newest model
   * revision this replica's watch delivered. Default 0.
   */
  fallbackModelRevision?: () => number;
}): EtcdStore {
  const { client, logger } = opts;
  const keys = createKeys(opts.prefix);
  /** etcd's --max-txn-ops once detected (detectTxnOpsLimit). */
  let maxTxnOps: number | undefined;
  const closing = new AbortController();
  let repairing = false;

  /** An etcd failure as the ApiError callers see (counted); anything else unchanged. */
  function etcdFailure(err: unknown, size: EtcdRequestSize = {}): unknown {
    const cls = classifyEtcdError(err);
    if (!cls) return err;
    opts.onEtcdError?.(cls);
    return toApiError(err, { ...size, maxTxnOps });
  }

  /** Runs fn; etcd failures become ApiErrors with a class-specific reason. */
  async function guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw etcdFailure(err);
    }
  }

  /** Refuses, before touching etcd, a batch whose reads alone exceed the detected limit. */
  function checkTxnOps(reads: number): void {
    if (maxTxnOps !== undefined && reads > maxTxnOps) {
      opts.onEtcdError?.("too-many-ops");
      throw toApiError(new Error("etcdserver: too many operations in txn request"), { operations: reads + 1, maxTxnOps });
    }
  }

  /** Decodes a stored document. Invalid data (written around the API) is skipped: fail closed. */
  function decode(kv: IKeyValue): ModelObject | undefined {
    try {
      const r = parseDocument(JSON.parse(kv.value.toString("utf8")), 0);
      if (r.object) return r.object;
      logger.error({ key: kv.key.toString(), issues: r.issues }, "invalid object in etcd ignored (treated as absent)");
    } catch (err) {
      logger.error({ key: kv.key.toString(), err }, "undecodable object in etcd ignored (treated as absent)");
    }
    return undefined;
  }

  async function readKeys(ks: string[]): Promise<{ revision: number; kvs: (IKeyValue | undefined)[] }> {
    if (ks.length === 0) return { revision: await currentRevision(), kvs: [] };
    const res = await client.kv.txn({
      success: ks.map((k) => ({ request_range: { key: Buffer.from(k) } })),
    });
    return {
      revision: Number(res.header.revision),
      kvs: res.responses.map((r) => r.response_range.kvs[0]),
    };
  }

  async function currentRevision(): Promise<number> {
    const res = await client.kv.range({ key: Buffer.from(keys.revision) });
    return Number(res.header.revision);
  }

  async function modelRevision(): Promise<number> {
    const res = await client.kv.range({ key: Buffer.from(keys.revision) });
    return res.kvs[0] ? Number(res.kvs[0].mod_revision) : (opts.fallbackModelRevision?.() ?? 0);
  }

  async function repairRevisionKey(): Promise<boolean> {
    const present = await client.kv.range({ key: Buffer.from(keys.revision), count_only: true });
    if (Number(present.count) > 0) return true;
    const model = await client.kv.range({ key: Buffer.from(keys.model), range_end: prefixEnd(keys.model), count_only: true });
    // A model that was never written has no revision key, and needs none.
    if (Number(model.count) === 0) return true;
    const res = await client.kv.txn({
      compare: [{ key: Buffer.from(keys.revision), target: "Version", result: "Equal", version: 0 }],
      success: [{ request_put: { key: Buffer.from(keys.revision), value: Buffer.from("") } }],
    });
    if (res.succeeded) logger.info({ revision: Number(res.header.revision) }, "model revision key restored (etcd accepts writes again)");
    return true;
  }

  /** After a delete-only write under the alarm: put the revision key back as soon as etcd accepts writes. */
  function repairInBackground(): void {
    if (repairing) return;
    repairing = true;
    void (async () => {
      const backoff = createBackoff({ initialMs: 1_000, maxMs: 30_000 });
      while (!closing.signal.aborted) {
        try {
          if (await repairRevisionKey()) break;
        } catch (err) {
          if (classifyEtcdError(err) !== "nospace") logger.debug({ err: (err as Error).message }, "revision key repair: etcd not ready yet");
        }
        await sleep(backoff.next(), closing.signal);
      }
      repairing = false;
    })();
  }

  /**
   * Optimistic transaction: read, decide, then commit only if nothing we
   * read changed meanwhile (mod_revision compares); retried a few times.
   */
  async function optimistic(
    ks: string[],
    decide: (kvs: (IKeyValue | undefined)[]) => { puts: [string, string][]; deletes: string[] },
  ): Promise<WriteResult> {
    checkTxnOps(ks.length);
    for (let attempt = 0; ; attempt++) {
      const { kvs } = await readKeys(ks).catch((err: unknown) => { throw etcdFailure(err, { operations: ks.length + 1 }); });
      const { puts, deletes } = decide(kvs);
      if (puts.length === 0 && deletes.length === 0) return { revision: await modelRevision(), changed: 0, deleted: 0 };
      const compare = ks.map((k, i) => {
        const kv = kvs[i];
        return kv
          ? { key: Buffer.from(k), target: "Mod" as const, result: "Equal" as const, mod_revision: kv.mod_revision }
          : { key: Buffer.from(k), target: "Version" as const, result: "Equal" as const, version: 0 };
      });
      const success = [
        ...puts.map(([k, v]) => ({ request_put: { key: Buffer.from(k), value: Buffer.from(v) } })),
        ...deletes.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
        { request_put: { key: Buffer.from(keys.revision), value: Buffer.from("") } },
      ];
      const size = () => ({
        operations: Math.max(compare.length, success.length),
        bytes: puts.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0),
      });
      let res;
      try {
        res = await client.kv.txn({ compare, success });
      } catch (err) {
        // Under the NOSPACE alarm etcd refuses any transaction that puts — our
        // revision-key touch included — but accepts deletions. A delete-only
        // write is what frees space, so it must work: retry it deleting the
        // revision key instead of touching it (same compares, so it is still
        // all-or-nothing against what we read). The key comes back with the
        // next accepted write (repairInBackground, or the compactor's leader).
        if (puts.length > 0 || classifyEtcdError(err) !== "nospace") throw etcdFailure(err, size());
        res = await client.kv.txn({
          compare,
          success: [
            ...deletes.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
            { request_delete_range: { key: Buffer.from(keys.revision) } },
          ],
        });
        if (res.succeeded) {
          logger.warn({ deleted: deletes.length, revision: Number(res.header.revision) }, "etcd is out of space: deleted without touching the revision key (it is put back once writes are accepted)");
          repairInBackground();
        }
      }
      if (res.succeeded) return { revision: Number(res.header.revision), changed: puts.length + deletes.length, deleted: deletes.length };
      if (attempt >= MAX_OPTIMISTIC_RETRIES) throw new ApiError("ABORTED", "concurrent modification; retry the request");
    }
  }

  async function detectTxnOpsLimit(): Promise<{ limit: number; sufficient: boolean }> {
    const accepts = async (n: number): Promise<boolean> => {
      try {
        await client.kv.txn({ success: Array.from({ length: n }, () => ({ request_range: { key: Buffer.from(keys.revision), count_only: true } })) });
        return true;
      } catch (err) {
        if (classifyEtcdError(err) === "too-many-ops") return false;
        throw err;
      }
    };
    let limit: number;
    if (await accepts(REQUIRED_TXN_OPS)) limit = REQUIRED_TXN_OPS;
    else {
      // Largest accepted count, by bisection: ~13 read-only calls at most.
      let lo = 0, hi = REQUIRED_TXN_OPS - 1;
      while (lo < hi) {
        const mid = Math.ceil((lo + hi + 1) / 2);
        if (await accepts(mid)) lo = mid;
        else hi = mid - 1;
      }
      limit = lo;
    }
    maxTxnOps = limit >= REQUIRED_TXN_OPS ? undefined : limit;
    return { limit, sufficient: limit >= REQUIRED_TXN_OPS };
  }

  return {
    keys,
    modelRevision: () => guarded(modelRevision),
    detectTxnOpsLimit,
    repairRevisionKey,
    close: () => closing.abort(),

    apply: (objects, expect, deletions = []) => guarded(async () => {
      const issues = objects.flatMap((o) => validateObject(o));
      const seen = new Set<string>();
      for (const o of objects) {
        const k = objectKey(o);
        if (seen.has(k)) issues.push({ document: describe(o), field: "", reason: "appears twice in one batch" });
        seen.add(k);
      }
      const ks = objects.map((o) => objectEtcdKey(keys, o));
      const delKeys = deletions.map((d) => refKey(keys, d.ref));
      const delSeen = new Set<string>();
      const written = new Set(ks);
      deletions.forEach((d, i) => {
        const name = describeRef(d.ref);
        if (written.has(delKeys[i]!)) issues.push({ document: name, field: "deletes", reason: "is both written and deleted in one batch" });
        else if (delSeen.has(delKeys[i]!)) issues.push({ document: name, field: "deletes", reason: "appears twice in one batch" });
        delSeen.add(delKeys[i]!);
      });
      if (issues.length) throw new ValidationError(issues);
      const values = objects.map((o) => JSON.stringify(toDocument(o)));
      const check = (name: string, want: number | undefined, kv: IKeyValue | undefined) => {
        const have = kv ? Number(kv.mod_revision) : 0;
        if (want !== undefined && want !== have) throw new ApiError("FAILED_PRECONDITION", `${name}: expected revision ${want}, found ${have}`);
      };
      const result = await optimistic([...ks, ...delKeys], (kvs) => {
        if (expect) kvs.slice(0, ks.length).forEach((kv, i) => check(describe(objects[i]!), expect.get(objectKey(objects[i]!)), kv));
        deletions.forEach((d, i) => check(describeRef(d.ref), d.expectedRevision, kvs[ks.length + i]));
        const puts: [string, string][] = [];
        kvs.slice(0, ks.length).forEach((kv, i) => {
          if (!kv || kv.value.toString("utf8") !== values[i]) puts.push([ks[i]!, values[i]!]);
        });
        const deletes = delKeys.filter((_, i) => kvs[ks.length + i]);
        return { puts, deletes };
      });
      // optimistic() counts puts and deletes together; `changed` is documents only.
      return { revision: result.revision, changed: result.changed - result.deleted, deleted: result.deleted };
    }),

    delete: (refs, ignoreMissing) => guarded(async () => {
      const ks = refs.map((r) => refKey(keys, r));
      return optimistic(ks, (kvs) => {
        const missing = refs.filter((_, i) => !kvs[i]);
        if (missing.length && !ignoreMissing) {
          const names = missing.map(describeRef);
          throw new ApiError("NOT_FOUND", `not found: ${names.join(", ")} (nothing deleted)`);
        }
        return { puts: [], deletes: ks.filter((_, i) => kvs[i]) };
      });
    }),

    getObject: (ref) => guarded(async () => {
      const { revision, kvs } = await readKeys([refKey(keys, ref)]);
      const kv = kvs[0];
      return { object: kv ? decode(kv) : undefined, modRevision: kv ? Number(kv.mod_revision) : 0, revision };
    }),

    list: (kind, host) => guarded(async () => {
      const prefix = kind === "Profile" ? keys.profiles : host ? `${keys.endpoints}${host}/` : keys.endpoints;
      const res = await client.kv.range({ key: Buffer.from(prefix), range_end: prefixEnd(prefix) });
      const objects = res.kvs.flatMap((kv) => {
        const object = decode(kv);
        return object ? [{ object, modRevision: Number(kv.mod_revision) }] : [];
      });
      return { objects, revision: Number(res.header.revision) };
    }),

    loadAll: () => guarded(async () => {
      const res = await client.kv.range({ key: Buffer.from(keys.model), range_end: prefixEnd(keys.model) });
      const objects = res.kvs.filter((kv) => kv.key.toString() !== keys.revision).flatMap((kv) => decode(kv) ?? []);
      return { revision: Number(res.header.revision), objects };
    }),

    async watch(fromRevision, onRevision, onError) {
      const watcher: Watcher = await client.watch().prefix(keys.model).startRevision(String(fromRevision + 1)).create();
      watcher.on("data", (res) => {
        // Group by revision: one etcd transaction = one batch for the graph.
        let batch: ModelEvent["change"][] = [];
        let batchRev = -1;
        for (const ev of res.events) {
          const rev = Number(ev.kv.mod_revision);
          if (batchRev !== -1 && rev !== batchRev) {
            onRevision(batchRev, batch);
            batch = [];
          }
          batchRev = rev;
          const key = ev.kv.key.toString("utf8");
          if (key === keys.revision) continue;
          if (ev.type === "Put") {
            const object = decode(ev.kv);
            if (object) batch.push({ type: "put", object });
            else batch.push(deletionFor(keys, key));
          } else batch.push(deletionFor(keys, key));
        }
        if (batchRev !== -1) onRevision(batchRev, batch);
      });
      watcher.on("error", onError);
      return { close: () => watcher.cancel() };
    },
  };
}

function deletionFor(keys: Keys, key: string): ModelEvent["change"] {
  return key.startsWith(keys.profiles)
    ? { type: "delete-profile", id: key.slice(keys.profiles.length) }
    : { type: "delete-endpoint", key: key.slice(keys.endpoints.length) };
}

export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1]! += 1;
  return b;
}
