// Hosts whose driver this replica refuses (DESIGN §6.2, §9.3): a driver
// lacking a feature the controller renders for gets no update at all, and
// keeps enforcing what it last programmed. Its host must not vanish from
// status meanwhile — an operator upgrading controllers first would read
// "all hosts in sync" while that host's policy is frozen — so the refusal
// is a host record: not connected, with the refusal as its error, which
// `palisadectl status` shows and `wait` counts as behind.
//
// Bounded: at most `max` records; each lives `ttlMs` after the host's last
// refused hello (a refused driver retries with backoff well within it, so
// the record stays while the driver does). A host served by a stream of
// this replica is never overwritten, and a record is dropped the moment a
// stream of the host is accepted. Timers are unref'd and need no closing: an
// expiry after the status store closed writes nothing (the store ignores it).
import type { HostStatus } from "../contract/status.js";

export interface RefusedHostsOptions {
  setHost(s: HostStatus): void;
  removeHost(host: string): void;
  /** Whether a stream of this replica serves the host now (its record is that stream's). */
  served(host: string): boolean;
  replicaId: string;
  /** How long a record outlives the host's last refused hello; default 120 s. */
  ttlMs?: number;
  /** Records at most; further refusals are only logged and counted. Default 256. */
  max?: number;
}

export interface RefusedHosts {
  /**
   * A hello refused with `error`: (re)writes the host's record unless the
   * host is served or the records are full. "new": the record was written
   * (first refusal, or it says something else now); "same": a retry that
   * only kept it alive; "none": no record (served, or full).
   */
  refused(host: string, hello: { driverVersion: string; iptablesBackend: string }, error: string): "new" | "same" | "none";
  /** A stream of the host was accepted: its record is the stream's from now on. */
  accepted(host: string): void;
  readonly size: number;
}

export function createRefusedHosts(o: RefusedHostsOptions): RefusedHosts {
  const ttlMs = o.ttlMs ?? 120_000;
  const max = o.max ?? 256;
  const records = new Map<string, { timer: NodeJS.Timeout; sig: string }>();

  const expire = (host: string) => {
    const r = records.get(host);
    if (!r) return;
    clearTimeout(r.timer);
    records.delete(host);
    if (!o.served(host)) o.removeHost(host);
  };

  return {
    refused(host, hello, error) {
      if (o.served(host)) return "none";
      const existing = records.get(host);
      if (!existing && records.size >= max) return "none";
      const driverVersion = hello.driverVersion.slice(0, 100);
      const iptablesBackend = hello.iptablesBackend.slice(0, 20);
      const sig = `${driverVersion}\t${iptablesBackend}\t${error}`;
      if (existing) clearTimeout(existing.timer);
      const timer = setTimeout(() => expire(host), ttlMs);
      timer.unref();
      records.set(host, { timer, sig });
      // A retry that says the same thing writes nothing (the store also
      // skips unchanged records, but this keeps the hot path free of it).
      if (existing?.sig === sig) return "same";
      o.setHost({
        hostname: host, connected: false, inSync: false, appliedRevision: 0, lastError: error, lastApplyMs: 0,
        driverVersion, iptablesBackend, controller: o.replicaId, updatedUnixMs: Date.now(), connectedUnixMs: 0,
      });
      return "new";
    },
    accepted(host) {
      const r = records.get(host);
      if (!r) return;
      clearTimeout(r.timer);
      records.delete(host);
    },
    get size() {
      return records.size;
    },
  };
}
