// Host and endpoint status in etcd. Each controller replica holds one lease;
// the statuses of the hosts it serves live under that lease, so if the
// replica dies they expire with it (a host never looks "connected" forever).
// Writes are coalesced per key: at most one write in flight per key, and
// only the newest pending value is written next.
import type { Etcd3, Lease } from "etcd3";
import type { Logger } from "pino";
import { createBackoff } from "../common/backoff.js";
import type { EndpointStatus, HostStatus } from "../gen/palisade/status/v1/status.js";
import type { Keys } from "./etcd-keys.js";
import { prefixEnd } from "./etcd-store.js";

export interface StatusStore {
  start(): Promise<void>;
  putHost(s: HostStatus): void;
  putEndpoint(s: EndpointStatus): void;
  /** Removes a host's statuses (its driver disconnected from us). */
  removeHost(host: string): void;
  read(): Promise<{ revision: number; hosts: HostStatus[]; endpoints: EndpointStatus[] }>;
  flushed(): Promise<void>;
  close(): Promise<void>;
}

export function createStatusStore(opts: { client: Etcd3; keys: Keys; logger: Logger; ttlSeconds?: number }): StatusStore {
  const { client, keys, logger } = opts;
  const ttl = opts.ttlSeconds ?? 15;
  let lease: Lease | undefined;
  /** What this replica owns: key -> JSON (undefined = delete). */
  const owned = new Map<string, string>();
  const pending = new Map<string, string | undefined>();
  const inFlight = new Set<string>();
  let idle: (() => void)[] = [];
  let closed = false;

  let leaseId = "";

  // A lost lease is replaced, with backoff: while etcd is down every new
  // lease is lost at once too, and re-granting in a tight loop would only
  // hammer it (and leave rejected promises behind).
  const renewBackoff = createBackoff({ initialMs: 250, maxMs: 10_000 });
  let renewTimer: NodeJS.Timeout | undefined;
  function renewLater(): void {
    if (closed || renewTimer) return;
    renewTimer = setTimeout(() => {
      renewTimer = undefined;
      if (closed) return;
      newLease().then(
        () => { renewBackoff.reset(); for (const [k, v] of owned) schedule(k, v); },
        (err: Error) => { logger.warn({ err: err.message }, "cannot grant a status lease yet; retrying"); renewLater(); },
      );
    }, renewBackoff.next());
  }

  function newLease(): Promise<void> {
    const l = client.lease(ttl, { autoKeepAlive: true });
    lease = l;
    l.on("lost", (err) => {
      if (closed || l !== lease) return;
      logger.warn({ err: err.message }, "status lease lost; re-registering statuses under a new lease");
      renewLater();
    });
    return l.grant().then((id) => { leaseId = id; });
  }

  /**
   * Deletes a status key only while it is still ours: after a failover another
   * replica may have re-written it for the same host under its own lease.
   */
  async function deleteIfOurs(key: string): Promise<void> {
    if (!leaseId) return;
    await client.kv.txn({
      compare: [{ key: Buffer.from(key), target: "Lease", result: "Equal", lease: leaseId }],
      success: [{ request_delete_range: { key: Buffer.from(key) } }],
    });
  }

  function schedule(key: string, value: string | undefined): void {
    if (closed) return;
    if (value === undefined) owned.delete(key);
    else owned.set(key, value);
    pending.set(key, value);
    if (!inFlight.has(key)) void write(key);
  }

  async function write(key: string): Promise<void> {
    while (pending.has(key) && !closed) {
      const value = pending.get(key);
      pending.delete(key);
      inFlight.add(key);
      try {
        if (value === undefined) await deleteIfOurs(key);
        else await lease!.put(key).value(value);
      } catch (err) {
        logger.warn({ key, err: (err as Error).message }, "status write failed; will retry");
        if (!pending.has(key)) pending.set(key, value);
        await new Promise((r) => setTimeout(r, 500));
      } finally {
        inFlight.delete(key);
      }
    }
    if (inFlight.size === 0 && pending.size === 0) {
      const waiters = idle;
      idle = [];
      waiters.forEach((w) => w());
    }
  }

  return {
    async start() {
      await newLease();
    },
    putHost(s) {
      schedule(`${keys.hostStatus}${s.hostname}`, JSON.stringify(s));
    },
    putEndpoint(s) {
      schedule(`${keys.endpointStatus}${s.endpointKey}`, JSON.stringify(s));
    },
    removeHost(host) {
      schedule(`${keys.hostStatus}${host}`, undefined);
      for (const k of [...owned.keys()]) if (k.startsWith(`${keys.endpointStatus}${host}/`)) schedule(k, undefined);
    },
    async read() {
      const res = await client.kv.range({ key: Buffer.from(keys.status), range_end: prefixEnd(keys.status) });
      const hosts: HostStatus[] = [];
      const endpoints: EndpointStatus[] = [];
      for (const kv of res.kvs) {
        const k = kv.key.toString();
        try {
          if (k.startsWith(keys.hostStatus)) hosts.push(JSON.parse(kv.value.toString()));
          else if (k.startsWith(keys.endpointStatus)) endpoints.push(JSON.parse(kv.value.toString()));
        } catch {
          logger.warn({ key: k }, "undecodable status ignored");
        }
      }
      return { revision: Number(res.header.revision), hosts, endpoints };
    },
    flushed() {
      if (inFlight.size === 0 && pending.size === 0) return Promise.resolve();
      return new Promise((r) => idle.push(r));
    },
    async close() {
      // Best effort: deleting our statuses now beats waiting for the TTL.
      const ks = [...owned.keys()];
      closed = true;
      clearTimeout(renewTimer);
      await Promise.all(ks.map((k) => deleteIfOurs(k).catch(() => undefined)));
      await lease?.revoke().catch(() => undefined);
    },
  };
}
