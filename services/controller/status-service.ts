// StatusService: host and endpoint status for monitoring clients and
// `palisadectl status|wait`, read from etcd (so any replica answers for all).
//
// Design note (DESIGN §9.3). Watchers share one view: the replica watches the
// status prefix and the model revision key once, however many clients
// watch, and each client session only remembers *which* keys changed since
// it last wrote. A slow client therefore gets fewer, newer updates (its
// pending set is bounded by the number of status keys), never an unbounded
// queue; the number of sessions is capped.
import * as grpc from "@grpc/grpc-js";
import type { Etcd3, Watcher } from "etcd3";
import type { Logger } from "pino";
import { retryUntilAborted } from "../util/backoff.js";
import { decidedStatus, unary } from "../runtime/grpc-server.js";
import { ApiError } from "../contract/errors.js";
import type { StatusServiceServer, WatchStatusRequest, WatchStatusResponse } from "../gen/palisade/status/v1/status.js";
import { toApiError } from "./etcd-errors.js";
import type { EtcdStore } from "./etcd-store.js";
import { prefixEnd } from "./etcd-store.js";
import type { StatusStore } from "./status-store.js";
import { StatusView, type StatusChange } from "./status-view.js";

/** Concurrent WatchStatus sessions per replica. */
export const MAX_STATUS_WATCHERS = 256;

interface Session {
  hosts: Set<string>;
  endpoints: Set<string>;
  removedHosts: Set<string>;
  removedEndpoints: Set<string>;
  revisionChanged: boolean;
  /** The view was rebuilt (watch lost): send a fresh snapshot. */
  resnapshot: boolean;
  kick(): void;
}

/** One etcd watch of the status keys and the model revision, shared by every WatchStatus session. */
function createStatusFeed(opts: { client: Etcd3; store: EtcdStore; logger: Logger }) {
  const { client, store, logger } = opts;
  const keys = store.keys;
  let view = new StatusView(keys);
  let modelRevision = 0;
  const sessions = new Set<Session>();
  let watchers: Watcher[] = [];
  let starting: Promise<void> | undefined;
  let running = false;
  const abort = new AbortController();

  function broadcast(c: StatusChange): void {
    if (!c.hosts.length && !c.removedHosts.length && !c.endpoints.length && !c.removedEndpoints.length) return;
    for (const s of sessions) {
      for (const h of c.hosts) { s.hosts.add(h); s.removedHosts.delete(h); }
      for (const h of c.removedHosts) { s.removedHosts.add(h); s.hosts.delete(h); }
      for (const e of c.endpoints) { s.endpoints.add(e); s.removedEndpoints.delete(e); }
      for (const e of c.removedEndpoints) { s.removedEndpoints.add(e); s.endpoints.delete(e); }
      s.kick();
    }
  }

  // Watches start at the revision right after the range that built the view,
  // and get their listeners the moment they exist, before anything is
  // awaited: etcd3 advances a watcher's start revision as events arrive,
  // listener or not, so an event delivered before its listener is lost for
  // good (and `wait` would hang on a host whose change it never saw). A load
  // that fails half-way cancels what it created: a watch left behind would
  // have no listener for its errors.
  async function load(): Promise<void> {
    const res = await client.kv.range({ key: Buffer.from(keys.status), range_end: prefixEnd(keys.status) });
    const next = new StatusView(keys);
    for (const kv of res.kvs) next.apply(kv.key.toString(), kv.value.toString());
    view = next;
    const from = String(Number(res.header.revision) + 1);
    let loaded = false;
    const mine: Watcher[] = [];
    let failLoad: (err: Error) => void = () => undefined;
    const failed = new Promise<never>((_, reject) => { failLoad = reject; });
    failed.catch(() => undefined);
    // Before the load completes an error fails it (and it is retried); after, it reloads.
    // (A watch of an earlier load, cancelled since, never triggers a reload.)
    const onError = (err: Error) => (!loaded ? failLoad(err) : watchers === mine ? void reload(err) : undefined);
    const w1 = client.watch().prefix(keys.status).startRevision(from).watcher();
    mine.push(w1);
    w1.on("error", onError);
    w1.on("data", (r) => {
      for (const ev of r.events) broadcast(next.apply(ev.kv.key.toString(), ev.type === "Put" ? ev.kv.value.toString() : undefined));
    });
    const w2 = client.watch().key(keys.revision).startRevision(from).watcher();
    mine.push(w2);
    w2.on("error", onError);
    w2.on("put", (kv) => {
      // Replayed puts (from `from` on) may be older than the revision read below.
      modelRevision = Math.max(modelRevision, Number(kv.mod_revision));
      for (const s of sessions) { s.revisionChanged = true; s.kick(); }
    });
    watchers = mine;
    const connected = (w: Watcher) => new Promise<void>((resolve) => w.once("connected", () => resolve()));
    try {
      const [, , rev] = await Promise.race([Promise.all([connected(w1), connected(w2), store.modelRevision()]), failed]);
      modelRevision = Math.max(rev, modelRevision);
      if (abort.signal.aborted) throw new Error("status service closed");
    } catch (err) {
      if (watchers === mine) watchers = [];
      await Promise.all(mine.map((w) => w.cancel().catch(() => undefined)));
      throw err;
    }
    loaded = true;
    running = true;
  }

  let reloading = false;
  async function reload(err: Error): Promise<void> {
    if (reloading || abort.signal.aborted) return;
    reloading = true;
    logger.warn({ err: err.message }, "status watch lost; reloading");
    await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
    watchers = [];
    const reloaded = await retryUntilAborted(load, {
      initialMs: 200, maxMs: 10_000, signal: abort.signal,
      onError: (e) => logger.warn({ err: e.message }, "status reload failed; retrying"),
    });
    if (reloaded) for (const s of sessions) { s.resnapshot = true; s.kick(); }
    reloading = false;
  }

  return {
    get view() { return view; },
    get modelRevision() { return modelRevision; },
    get sessions() { return sessions.size; },
    async subscribe(s: Session): Promise<() => void> {
      if (!running) {
        starting ??= load().finally(() => { starting = undefined; });
        await starting;
      }
      sessions.add(s);
      return () => sessions.delete(s);
    },
    async close(): Promise<void> {
      abort.abort();
      await Promise.all(watchers.map((w) => w.cancel().catch(() => undefined)));
    },
  };
}

export function createStatusService(opts: { client: Etcd3; store: EtcdStore; status: StatusStore; logger: Logger; maxWatchers?: number }): StatusServiceServer & { close(): Promise<void> } {
  const { store, status, logger } = opts;
  const feed = createStatusFeed(opts);
  const problems = (): string[] => {
    const p = status.problem();
    return p ? [p] : [];
  };
  // A problem can appear or clear without any status key changing: sessions
  // compare what they last sent with the current list every second.
  const sessionsToCheck = new Set<() => void>();
  const problemTimer = setInterval(() => { for (const kick of sessionsToCheck) kick(); }, 1_000);
  problemTimer.unref();
  const maxWatchers = opts.maxWatchers ?? MAX_STATUS_WATCHERS;
  return {
    close: () => { clearInterval(problemTimer); return feed.close(); },
    getStatus: unary(logger, async () => {
      // etcd's failures reach the client classified (UNAVAILABLE, …), as on the policy API.
      const [s, modelRevision] = await Promise.all([status.read().catch((e: unknown) => { throw toApiError(e); }), store.modelRevision()]);
      return { hosts: s.hosts, endpoints: s.endpoints, modelRevision, problems: problems() };
    }),
    watchStatus(call: grpc.ServerWritableStream<WatchStatusRequest, WatchStatusResponse>) {
      if (feed.sessions >= maxWatchers) {
        call.emit("error", decidedStatus(new ApiError("RESOURCE_EXHAUSTED", `too many status watchers on this replica (${maxWatchers}); retry later or use another replica`)));
        return;
      }
      let done = false;
      let waitingDrain = false;
      let unsubscribe: (() => void) | undefined;
      let sentRevision = -1;
      let sentProblems = "";
      const session: Session = {
        hosts: new Set(), endpoints: new Set(), removedHosts: new Set(), removedEndpoints: new Set(),
        revisionChanged: false, resnapshot: true,
        kick: () => pump(),
      };
      const end = () => {
        done = true;
        sessionsToCheck.delete(session.kick);
        unsubscribe?.();
      };
      call.on("cancelled", end);
      call.on("close", end);
      call.on("error", end);

      function pump(): void {
        while (!done && !waitingDrain) {
          const view = feed.view;
          let msg: WatchStatusResponse;
          if (session.resnapshot) {
            session.resnapshot = false;
            for (const set of [session.hosts, session.endpoints, session.removedHosts, session.removedEndpoints]) set.clear();
            msg = { snapshot: true, hosts: view.hosts(), endpoints: [...view.endpoints.values()], removedHosts: [], removedEndpoints: [], modelRevision: feed.modelRevision, problems: problems() };
          } else if (session.hosts.size || session.endpoints.size || session.removedHosts.size || session.removedEndpoints.size || (session.revisionChanged && feed.modelRevision !== sentRevision) || problems().join("\n") !== sentProblems) {
            msg = {
              snapshot: false,
              hosts: [...session.hosts].flatMap((h) => view.host(h) ?? []),
              endpoints: [...session.endpoints].flatMap((e) => view.endpoints.get(e) ?? []),
              removedHosts: [...session.removedHosts], removedEndpoints: [...session.removedEndpoints],
              modelRevision: feed.modelRevision, problems: problems(),
            };
            for (const set of [session.hosts, session.endpoints, session.removedHosts, session.removedEndpoints]) set.clear();
          } else {
            session.revisionChanged = false;
            return;
          }
          session.revisionChanged = false;
          sentRevision = msg.modelRevision;
          sentProblems = msg.problems.join("\n");
          if (!call.write(msg)) {
            // Changes meanwhile only mark keys: the session's memory stays bounded.
            waitingDrain = true;
            call.once("drain", () => { waitingDrain = false; pump(); });
          }
        }
      }

      feed.subscribe(session).then(
        (unsub) => {
          if (done) return unsub();
          unsubscribe = unsub;
          sessionsToCheck.add(session.kick);
          pump();
        },
        (err: Error) => {
          logger.warn({ err: err.message }, "status watch failed");
          const e = toApiError(err);
          call.emit("error", decidedStatus(e instanceof ApiError ? e : new ApiError("UNAVAILABLE", `status unavailable: ${err.message}`)));
        },
      );
    },
  };
}
