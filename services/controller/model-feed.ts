// Feeds the calculation graph from etcd: a consistent load at revision R,
// then a watch from R+1, one graph batch per etcd revision. A lost or
// compacted watch triggers a resync (reload and diff into the graph) without
// restarting anything: the graph turns the diff into minimal host updates.
import type { Logger } from "pino";
import type { CalcGraph } from "../calc/index.js";
import { createBackoff, retryUntilAborted, sleep } from "../util/backoff.js";
import { objectKey, type ModelObject } from "../model/index.js";
import type { EtcdStore, ModelEvent } from "./etcd-store.js";
import type { SyncHub } from "./sync-hub.js";

export interface ModelFeed {
  /** Resolves after the initial load (retried up to `timeoutMs`); the watch then runs until stop(). */
  start(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  readonly ready: boolean;
  readonly revision: number;
}

export function createModelFeed(opts: { store: EtcdStore; graph: CalcGraph; hub: SyncHub; logger: Logger; observeCalc?: (seconds: number) => void }): ModelFeed {
  const { store, graph, hub, logger } = opts;
  let watch: { close(): Promise<void> } | undefined;
  let stopped = false;
  let ready = false;
  let revision = 0;
  let resyncing = false;
  const abort = new AbortController();

  function applyChange(c: ModelEvent["change"]): void {
    if (c.type === "put") {
      if (c.object.kind === "Profile") graph.upsertProfile(c.object.profile);
      else graph.upsertEndpoint(c.object.endpoint);
    } else if (c.type === "delete-profile") graph.deleteProfile(c.id);
    else graph.deleteEndpoint(c.key);
  }

  function onRevision(rev: number, changes: ModelEvent["change"][]): void {
    if (rev <= revision) return; // replayed after a resync
    const t0 = performance.now();
    for (const c of changes) applyChange(c);
    revision = rev;
    graph.flush(rev);
    opts.observeCalc?.((performance.now() - t0) / 1000);
    hub.onRevision(rev);
  }

  /** Loads everything and diffs it into the graph (initial load and resync). */
  async function load(): Promise<void> {
    const { revision: rev, objects } = await store.loadAll();
    const present = new Set(objects.map(objectKey));
    for (const id of [...graph.profileIds()]) if (!present.has(`profile:${id}`)) graph.deleteProfile(id);
    for (const key of [...graph.endpointKeys()]) if (!present.has(`endpoint:${key}`)) graph.deleteEndpoint(key);
    // Profiles first: endpoints then render against existing profiles at once.
    const sorted = [...objects].sort((a: ModelObject, b: ModelObject) => (a.kind === b.kind ? 0 : a.kind === "Profile" ? -1 : 1));
    for (const o of sorted) applyChange({ type: "put", object: o });
    revision = Math.max(revision, rev);
    graph.flush(revision);
    hub.onRevision(revision);
    watch = await store.watch(rev, onRevision, (err) => void resync(err));
    logger.info({ revision: rev, objects: objects.length }, "model loaded; watching for changes");
  }

  async function resync(err: Error): Promise<void> {
    if (stopped || resyncing) return;
    resyncing = true;
    logger.warn({ err: err.message }, "model watch lost; resynchronising from etcd");
    await watch?.close().catch(() => undefined);
    watch = undefined;
    await retryUntilAborted(load, {
      initialMs: 200, maxMs: 10_000, signal: abort.signal,
      onError: (e) => logger.warn({ err: e.message }, "resync failed; retrying"),
    });
    resyncing = false;
  }

  return {
    get ready() { return ready; },
    get revision() { return revision; },
    async start(timeoutMs = Infinity) {
      // Retried for a while (etcd may be starting too), then given up with the
      // last error: a controller that cannot read its model (etcd down, TLS
      // refused) must fail its start clearly, not hang (systemd restarts it).
      const backoff = createBackoff({ initialMs: 200, maxMs: 5_000 });
      const deadline = Date.now() + timeoutMs;
      while (!stopped) {
        try {
          await load();
          ready = true;
          return;
        } catch (e) {
          const delay = backoff.next();
          if (Date.now() + delay > deadline) throw e;
          logger.warn({ err: (e as Error).message }, "cannot load the model from etcd yet; retrying");
          await sleep(delay, abort.signal);
        }
      }
    },
    async stop() {
      stopped = true;
      abort.abort();
      await watch?.close().catch(() => undefined);
    },
  };
}

