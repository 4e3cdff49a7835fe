// The status as readers see it, rebuilt from etcd's status keys (pure: no
// I/O). Host records and applied revisions are stored apart (DESIGN §9.3):
//
//   status/hosts/<host>          what an operator sees change (connected, in
//                                sync, last error, versions) — written rarely
//   status/progress/<replica>    the applied revision of every host that
//                                replica serves — one key, rewritten at most
//                                once per flush interval
//
// A reader merges them: a host's applied revision is the larger of its
// record's and its serving replica's progress entry. Both live under the
// replica's lease, so a dead replica's hosts vanish together with their
// progress.
import type { EndpointStatus, HostStatus } from "../gen/palisade/status/v1/status.js";
import type { Keys } from "./etcd-keys.js";

/** The progress document of one replica: revision -> hosts at that revision (compact at 1,000 hosts). */
export interface ProgressDocument {
  v: 1;
  revisions: Record<string, string[]>;
}

export function encodeProgress(applied: ReadonlyMap<string, number>): string {
  const byRevision: Record<string, string[]> = {};
  for (const [host, rev] of applied) (byRevision[String(rev)] ??= []).push(host);
  return JSON.stringify({ v: 1, revisions: byRevision } satisfies ProgressDocument);
}

export function decodeProgress(json: string): Map<string, number> {
  const out = new Map<string, number>();
  const doc = JSON.parse(json) as Partial<ProgressDocument>;
  for (const [rev, hosts] of Object.entries(doc.revisions ?? {})) {
    const r = Number(rev);
    if (!Number.isSafeInteger(r) || !Array.isArray(hosts)) continue;
    for (const h of hosts) if (typeof h === "string") out.set(h, r);
  }
  return out;
}

/** What one change to the view touched (to tell watchers). */
export interface StatusChange {
  hosts: string[];
  removedHosts: string[];
  endpoints: string[];
  removedEndpoints: string[];
}

export class StatusView {
  private readonly records = new Map<string, HostStatus>();
  private readonly progress = new Map<string, Map<string, number>>();
  readonly endpoints = new Map<string, EndpointStatus>();

  constructor(private readonly keys: Pick<Keys, "hostStatus" | "endpointStatus" | "progress">) {}

  /** Applies one etcd key's value (undefined: deleted). Undecodable values count as absent. */
  apply(key: string, value: string | undefined): StatusChange {
    const change: StatusChange = { hosts: [], removedHosts: [], endpoints: [], removedEndpoints: [] };
    const parse = <T>(): T | undefined => {
      if (value === undefined) return undefined;
      try { return JSON.parse(value) as T; } catch { return undefined; }
    };
    /** A record key: stored and reported as changed, or removed and reported once. */
    const record = <T>(map: Map<string, T>, id: string, changed: string[], removed: string[]) => {
      const v = parse<T>();
      if (v) {
        map.set(id, v);
        changed.push(id);
      } else if (map.delete(id)) removed.push(id);
    };
    if (key.startsWith(this.keys.hostStatus)) {
      record(this.records, key.slice(this.keys.hostStatus.length), change.hosts, change.removedHosts);
    } else if (key.startsWith(this.keys.endpointStatus)) {
      record(this.endpoints, key.slice(this.keys.endpointStatus.length), change.endpoints, change.removedEndpoints);
    } else if (key.startsWith(this.keys.progress)) {
      const replica = key.slice(this.keys.progress.length);
      let next: Map<string, number> | undefined;
      if (value !== undefined) {
        try { next = decodeProgress(value); } catch { next = undefined; }
      }
      const prev = this.progress.get(replica);
      if (next) this.progress.set(replica, next);
      else this.progress.delete(replica);
      // Hosts whose merged revision may have moved: those in either version.
      for (const [host, rev] of next ?? []) if (prev?.get(host) !== rev && this.records.get(host)?.controller === replica) change.hosts.push(host);
      for (const host of prev?.keys() ?? []) if (!next?.has(host) && this.records.get(host)?.controller === replica) change.hosts.push(host);
    }
    return change;
  }

  /** A host's status with its applied revision merged from its replica's progress. */
  host(name: string): HostStatus | undefined {
    const rec = this.records.get(name);
    if (!rec) return undefined;
    const p = this.progress.get(rec.controller)?.get(name);
    return p !== undefined && p > rec.appliedRevision ? { ...rec, appliedRevision: p } : rec;
  }

  hostNames(): IterableIterator<string> {
    return this.records.keys();
  }

  hosts(): HostStatus[] {
    return [...this.records.keys()].map((h) => this.host(h)!);
  }
}
