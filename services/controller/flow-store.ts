// The controller's recent window of flow records (DESIGN §5.9, §6.12), in
// memory only: flows are high volume and best effort, and etcd is the store
// of things that must survive. Each replica holds what the drivers
// connected to it reported; `palisadectl flows` merges replicas.
//
// Bounds (all records of one host/endpoint/5-tuple/decision point merge into
// one, packets summed):
//   per host   FLOW_LIMITS.perHost records, the least recently seen evicted
//   in total   FLOW_LIMITS.total records; beyond, new records are refused
//              (counted) until old ones age out
//   age        records not seen for FLOW_LIMITS.retentionMs are forgotten
//   watchers   FLOW_LIMITS.watchers sessions, each with a queue of
//              FLOW_LIMITS.watchQueue records; a slow reader loses records
//              (told how many in its next message), never the controller's memory
import { parseAddress } from "../model/index.js";
import type { FlowRecord } from "../gen/palisade/flow/v1/flow.js";
import type { FlowObservation, FlowReport } from "../gen/palisade/sync/v1/sync.js";

export const FLOW_LIMITS = {
  perHost: 5_000,
  total: 200_000,
  retentionMs: 15 * 60_000,
  watchers: 64,
  watchQueue: 1_000,
  recordsPerReport: 10_000,
  listDefault: 100,
  listMax: 10_000,
};

const DIRECTIONS = new Set(["inbound", "outbound"]);
const DECISIONS = new Set(["rule", "default-deny", "missing-profile", "inactive", "no-endpoint", "anti-spoofing", "workload-to-host", "ended"]);
const CHAIN_RE = /^pal[A-Za-z0-9_.-]{1,25}$/;
const IFACE_RE = /^[A-Za-z0-9_.@-]{0,15}$/;

export interface FlowFilterSpec {
  host?: string;
  endpoint?: string;
  verdict?: string;
  sinceUnixMs?: number;
}

export interface FlowResolver {
  /** The profile a profile chain stands for (controller's model). */
  profileOfChain(chain: string): string | undefined;
  /** The endpoint's profile_ids (missing-profile reports name a position in it). */
  profileIdsOf(endpointKey: string): readonly string[] | undefined;
  /** The endpoint's network, when it has one (DESIGN §2.10). */
  networkOf(endpointKey: string): string | undefined;
}

export interface FlowEvents {
  /** A record was stored (new or merged): counted by host and decision for metrics. */
  onStored?(host: string, obs: FlowObservation): void;
  onDropped?(reason: string, n: number): void;
  onDriverDropped?(host: string, reason: string, n: number): void;
}

function matches(r: FlowRecord, f: FlowFilterSpec): boolean {
  return (!f.host || r.host === f.host)
    && (!f.endpoint || r.endpoint === f.endpoint)
    && (!f.verdict || r.verdict === f.verdict)
    && (!f.sinceUnixMs || r.lastSeenUnixMs >= f.sinceUnixMs);
}

function keyOf(o: FlowObservation): string {
  return [o.endpointKey, o.interfaceName, o.direction, o.src, o.dst, o.protocol, o.srcPort ?? "", o.dstPort ?? "", o.icmpType ?? "", o.icmpCode ?? "", o.verdict, o.decision, o.chain, o.index, o.revision ?? ""].join("|");
}

/** Why an observation from a driver is refused (undefined: acceptable). */
export function checkObservation(host: string, o: FlowObservation): string | undefined {
  if (o.endpointKey !== "" && (!o.endpointKey.startsWith(`${host}/`) || o.endpointKey.length > 700)) return "endpoint of another host";
  if (!IFACE_RE.test(o.interfaceName)) return "interface name";
  if (!DIRECTIONS.has(o.direction)) return "direction";
  if (o.verdict !== "allow" && o.verdict !== "deny") return "verdict";
  if (!DECISIONS.has(o.decision) || (o.verdict === "allow" && o.decision !== "rule")) return "decision";
  if (!CHAIN_RE.test(o.chain)) return "chain";
  const s = parseAddress(o.src), d = parseAddress(o.dst);
  if (!s || !d || s.version !== d.version || (o.ipVersion !== 4 && o.ipVersion !== 6) || s.version !== o.ipVersion) return "addresses";
  if (o.protocol > 255 || o.packets < 1 || o.index < -1 || o.index > 100_000) return "numbers";
  // Only an ended connection names a revision (the one that revoked it).
  if (o.revision !== undefined && (o.decision !== "ended" || !Number.isSafeInteger(o.revision) || o.revision < 0)) return "revision";
  if (o.decision === "ended" && o.verdict !== "deny") return "decision";
  return undefined;
}

type Watcher = { filter: FlowFilterSpec; push(r: FlowRecord): void };

export class FlowStore {
  private readonly hosts = new Map<string, Map<string, FlowRecord>>();
  private total = 0;
  private readonly watchers = new Set<Watcher>();
  /** Records refused since start (capacity, invalid). */
  dropped = 0;

  constructor(private readonly resolver: FlowResolver, private readonly replica: string, private readonly events: FlowEvents = {}, private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.total;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  private refuse(reason: string, n = 1): void {
    this.dropped += n;
    this.events.onDropped?.(reason, n);
  }

  /** Takes one report of a host's driver: validated, resolved, merged, fanned out to watchers. */
  ingest(host: string, report: FlowReport): void {
    for (const [reason, n] of Object.entries(report.dropped ?? {})) {
      if (n > 0 && /^[a-z-]{1,20}$/.test(reason)) this.events.onDriverDropped?.(host, reason, Number(n));
    }
    const records = report.records;
    if (records.length > FLOW_LIMITS.recordsPerReport) this.refuse("invalid", records.length - FLOW_LIMITS.recordsPerReport);
    for (const o of records.slice(0, FLOW_LIMITS.recordsPerReport)) {
      if (checkObservation(host, o) !== undefined) {
        this.refuse("invalid");
        continue;
      }
      const r = this.store(host, o);
      if (!r) continue;
      this.events.onStored?.(host, o);
      // Watchers see the record as List would: cumulative packets, first and last seen.
      for (const w of this.watchers) if (matches(r, w.filter)) w.push({ ...r });
    }
  }

  private store(host: string, o: FlowObservation): FlowRecord | undefined {
    let m = this.hosts.get(host);
    if (!m) this.hosts.set(host, (m = new Map()));
    const k = keyOf(o);
    const old = m.get(k);
    if (old) {
      old.packets += o.packets;
      old.firstSeenUnixMs = Math.min(old.firstSeenUnixMs, o.firstSeenUnixMs);
      old.lastSeenUnixMs = Math.max(old.lastSeenUnixMs, o.lastSeenUnixMs);
      // Most recently seen last: eviction takes the least recent.
      m.delete(k);
      m.set(k, old);
      return old;
    }
    if (this.total >= FLOW_LIMITS.total) this.expire();
    if (this.total >= FLOW_LIMITS.total) {
      this.refuse("capacity");
      return undefined;
    }
    if (m.size >= FLOW_LIMITS.perHost) {
      const oldest = m.keys().next().value!;
      m.delete(oldest);
      this.total--;
    }
    const r: FlowRecord = {
      host, endpoint: o.endpointKey, interfaceName: o.interfaceName, direction: o.direction, src: o.src, dst: o.dst,
      protocol: o.protocol, srcPort: o.srcPort, dstPort: o.dstPort, icmpType: o.icmpType, icmpCode: o.icmpCode,
      verdict: o.verdict, decision: o.decision, ...this.resolve(o), packets: o.packets,
      firstSeenUnixMs: o.firstSeenUnixMs, lastSeenUnixMs: o.lastSeenUnixMs, chain: o.chain, controller: this.replica,
      // Which of the endpoints sharing an address this was: the driver names
      // the endpoint by key; the model knows its network.
      network: (o.endpointKey && this.resolver.networkOf(o.endpointKey)) || "",
      // An ended connection: the revision that revoked it, as the driver knew it.
      ...(o.revision !== undefined ? { revision: o.revision } : {}),
    };
    m.set(k, r);
    this.total++;
    return r;
  }

  /** Profile and rule index in trace's terms, from the chain and index the driver saw. */
  private resolve(o: FlowObservation): { profile: string; ruleIndex: number } {
    if (o.decision === "rule") return { profile: this.resolver.profileOfChain(o.chain) ?? "", ruleIndex: o.index };
    if (o.decision === "missing-profile") return { profile: this.resolver.profileIdsOf(o.endpointKey)?.[o.index] ?? "", ruleIndex: -1 };
    return { profile: "", ruleIndex: -1 };
  }

  /** Forgets records not seen within the retention window (least recent first per host). */
  expire(): void {
    const cutoff = this.now() - FLOW_LIMITS.retentionMs;
    for (const [host, m] of this.hosts) {
      for (const [k, r] of m) {
        if (r.lastSeenUnixMs >= cutoff) break;
        m.delete(k);
        this.total--;
      }
      if (m.size === 0) this.hosts.delete(host);
    }
  }

  /** The newest `limit` matching records, oldest first. */
  list(filter: FlowFilterSpec, limit: number): FlowRecord[] {
    this.expire();
    const hosts = filter.host ? [this.hosts.get(filter.host)].filter((m) => m !== undefined) : [...this.hosts.values()];
    const out: FlowRecord[] = [];
    for (const m of hosts) for (const r of m.values()) if (matches(r, filter)) out.push(r);
    out.sort((a, b) => a.lastSeenUnixMs - b.lastSeenUnixMs);
    return out.slice(Math.max(0, out.length - limit));
  }

  /** Registers a watcher; undefined when FLOW_LIMITS.watchers are already watching. */
  watch(filter: FlowFilterSpec, push: (r: FlowRecord) => void): (() => void) | undefined {
    if (this.watchers.size >= FLOW_LIMITS.watchers) return undefined;
    const w: Watcher = { filter, push };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }
}
