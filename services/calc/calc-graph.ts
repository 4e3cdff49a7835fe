// The calculation core: model events in, per-host desired-state updates out.
// Pure: no etcd, no gRPC, no timers, no processes. Feed it upserts/deletes,
// call flush(revision) at the end of each batch (one etcd revision), and it
// calls the sink once per affected host with that host's coalesced updates.
//
// Incrementality (DESIGN §7): a profile is rendered once and shared by all
// hosts; tag memberships are reference-counted globally and fanned out only
// to hosts whose profiles reference the tag; an endpoint change touches its
// own host's layout plus the sets of its tags. Nothing is ever recomputed
// "for everything".
//
// The graph keeps what hosts share (profiles, rendered profiles, tag sets,
// reference counts); each host's own dataplane state lives in its
// HostLayout (host-layout.ts, set-host-layout.ts), called only through that
// interface (DESIGN §7.4).
//
// Indexes, and why each exists:
//   profileUsers   profile id -> endpoint keys   (profile appears/disappears,
//                                                 or its tags change)
//   profileHosts   profile id -> hosts using it  (profile rules change)
//   setMembers     ipset name -> addr -> refcount (tag membership)
//   setHosts       ipset name -> hosts referencing it (membership fan-out)
//   contrib        endpoint key -> (tags, addrs) it contributed
import { deepEqual } from "../util/deep-equal.js";
import { endpointKeyString, hostAddress, type Endpoint, type IpVersion, type Profile } from "../model/index.js";
import { DEFAULT_CALC_CONFIG, type CalcConfig } from "./calc-config.js";
import { chainKey, sameRules, type ChainDef, type HostUpdate } from "./desired-state.js";
import type { HostLayout, HostOutput } from "./host-layout.js";
import { tagSet } from "./names.js";
import { renderProfile, type RenderedProfile } from "./render-rules.js";
import { SetHostLayout, ipv6MacCheck } from "./set-host-layout.js";
import { UpdateCoalescer } from "./update-coalescer.js";

export interface CalcSink {
  /** Updates for one host, in flush order, reflecting `revision`. */
  onHostUpdates(host: string, revision: number, updates: HostUpdate[]): void;
}

export interface CalcGraphOptions {
  /**
   * Which hosts get output: "all" (pure use: tests, benchmarks) or only the
   * hosts that subscribe() (the controller: a host with a driver connected).
   * Output for hosts nobody listens to is not built at all; their views are
   * still kept up to date, and a subscriber starts from snapshot().
   */
  listen?: "all" | "subscribed";
}

const FAMILIES: readonly IpVersion[] = [4, 6];

/** What a host's driver learns of an endpoint: its interface and, for a bridged port, its IPv6 MAC check (DESIGN §6.3). */
function endpointUpdate(key: string, ep: Endpoint): HostUpdate {
  const mac6 = ipv6MacCheck(ep);
  return mac6 ? { type: "endpoint-update", key, interfaceName: ep.name, mac6 } : { type: "endpoint-update", key, interfaceName: ep.name };
}

/**
 * What the graph keeps per host: the outbox, which endpoints and profiles
 * it has, which tag sets it references; everything of its own dataplane
 * (placement, classes, local sets, chains) is its layout's (DESIGN §7.4).
 */
class HostView {
  readonly out = new UpdateCoalescer();
  readonly endpoints = new Set<string>();
  readonly profileRefs = new Map<string, number>();
  readonly setRefs = new Map<string, { family: IpVersion; count: number }>();
  /**
   * Sets newly referenced in this batch: their full membership is read from
   * the global state at flush time (once), and deltas skip them.
   */
  readonly pendingFull = new Set<string>();
  readonly layout: HostLayout;
  /** The layout emits its initial sets and chains while it is built: `out` exists by then. */
  constructor(makeLayout: (out: HostOutput) => HostLayout, output: (hv: HostView) => HostOutput) {
    this.layout = makeLayout(output(this));
  }
}

interface Contribution {
  tags: string[];
  v4: string[];
  v6: string[];
}

export class CalcGraph {
  private readonly profiles = new Map<string, Profile>();
  private readonly rendered = new Map<string, RenderedProfile>();
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly hosts = new Map<string, HostView>();
  private readonly profileUsers = new Map<string, Set<string>>();
  private readonly profileHosts = new Map<string, Set<string>>();
  private readonly setMembers = new Map<string, Map<string, number>>();
  private readonly setHosts = new Map<string, Set<string>>();
  private readonly contrib = new Map<string, Contribution>();
  private readonly pendingDeltas = new Map<string, { family: IpVersion; added: Set<string>; removed: Set<string> }>();
  private readonly dirty = new Set<string>();
  private readonly subscribed = new Set<string>();
  private readonly listenAll: boolean;
  private revision = 0;

  constructor(private readonly sink: CalcSink, private readonly cfg: CalcConfig = DEFAULT_CALC_CONFIG, opts: CalcGraphOptions = {}) {
    this.listenAll = (opts.listen ?? "all") === "all";
  }

  get currentRevision(): number {
    return this.revision;
  }

  hasProfile(id: string): boolean {
    return this.profiles.has(id);
  }

  profileIds(): IterableIterator<string> {
    return this.profiles.keys();
  }

  endpointKeys(): IterableIterator<string> {
    return this.endpoints.keys();
  }

  getProfile(id: string): Profile | undefined {
    return this.profiles.get(id);
  }

  getEndpoint(key: string): Endpoint | undefined {
    return this.endpoints.get(key);
  }

  /** The model as the graph holds it (for the trace evaluator). */
  modelView(): { profiles: ReadonlyMap<string, Profile>; endpoints: Iterable<Endpoint> } {
    return { profiles: this.profiles, endpoints: this.endpoints.values() };
  }

  // ---------------------------------------------------------------- profiles

  upsertProfile(p: Profile): void {
    const old = this.profiles.get(p.id);
    if (old && deepEqual(old, p)) return;
    const oldR = this.rendered.get(p.id);
    const newR = renderProfile(p, this.cfg);
    this.profiles.set(p.id, p);
    this.rendered.set(p.id, newR);
    // What changed is the same for every host using the profile: computed once.
    let changed: ChainDef[] = [];
    if (oldR) {
      const before = new Map(oldR.chains.map((c) => [chainKey(c.family, c.name), c]));
      changed = newR.chains.filter((c) => {
        const o = before.get(chainKey(c.family, c.name));
        return !o || !sameRules(o.rules, c.rules);
      });
    }
    const setsIn = oldR ? [...newR.sets].filter(([name]) => !oldR.sets.has(name)) : [];
    const setsOut = oldR ? [...oldR.sets.keys()].filter((name) => !newR.sets.has(name)) : [];
    for (const host of this.profileHosts.get(p.id) ?? []) {
      const hv = this.hosts.get(host)!;
      if (!oldR) {
        this.attachProfile(host, hv, newR);
        continue;
      }
      for (const c of changed) this.emit(host, hv, { type: "chain-update", chain: c });
      for (const [name, s] of setsIn) this.incSetRef(host, hv, name, s.family);
      for (const name of setsOut) this.decSetRef(host, hv, name);
    }
    if (!old) this.rerenderUsers(p.id);
    if (!old || !deepEqual(old.tags, p.tags)) this.recomputeUsersContrib(p.id);
  }

  deleteProfile(id: string): void {
    const oldR = this.rendered.get(id);
    if (!oldR) return;
    this.profiles.delete(id);
    this.rendered.delete(id);
    // The position trees first stop going to the profile (its users' members
    // move to the missing sets, which DROP), then the profile's chains go:
    // the coalescer orders it so.
    this.rerenderUsers(id);
    for (const host of this.profileHosts.get(id) ?? []) this.detachProfile(host, this.hosts.get(host)!, oldR);
    this.recomputeUsersContrib(id);
  }

  // --------------------------------------------------------------- endpoints

  upsertEndpoint(ep: Endpoint): void {
    const key = endpointKeyString(ep);
    const old = this.endpoints.get(key);
    if (old && deepEqual(old, ep)) return;
    const hv = this.host(ep.host);
    this.endpoints.set(key, ep);
    hv.endpoints.add(key);
    const oldIds = new Set(old?.profileIds ?? []);
    const newIds = new Set(ep.profileIds);
    for (const id of newIds) if (!oldIds.has(id)) this.addUse(ep.host, hv, id, key);
    for (const id of oldIds) if (!newIds.has(id)) this.dropUse(ep.host, hv, id, key);
    if (old && old.name !== ep.name) hv.layout.endpointOnInterface(old.name, key, undefined);
    hv.layout.endpointOnInterface(ep.name, key, ep);
    this.emit(ep.host, hv, endpointUpdate(key, ep));
    this.updateContrib(key, ep);
  }

  deleteEndpoint(key: string): void {
    const old = this.endpoints.get(key);
    if (!old) return;
    const hv = this.hosts.get(old.host)!;
    this.endpoints.delete(key);
    hv.endpoints.delete(key);
    hv.layout.endpointOnInterface(old.name, key, undefined);
    for (const id of old.profileIds) this.dropUse(old.host, hv, id, key);
    this.emit(old.host, hv, { type: "endpoint-remove", key });
    this.updateContrib(key, undefined);
  }

  // ------------------------------------------------------------ output side

  /** Ends a batch: fans out tag deltas and hands each dirty host its updates. */
  flush(revision: number): void {
    if (revision > this.revision) this.revision = revision;
    // Hosts that only receive membership deltas in this batch (the common
    // fan-out case) get them in a plain array: their long-lived coalescers are
    // not touched, which keeps old-to-young writes (and GC pauses) down.
    const deltaOnly = new Map<string, HostUpdate[]>();
    for (const [name, d] of this.pendingDeltas) {
      if (d.added.size === 0 && d.removed.size === 0) continue;
      // One immutable update object, shared by every host that references the set.
      const delta: HostUpdate = { type: "ipset-delta", name, family: d.family, added: [...d.added], removed: [...d.removed] };
      for (const host of this.setHosts.get(name) ?? []) {
        const hv = this.hosts.get(host)!;
        if (hv.pendingFull.has(name)) continue; // gets the full, current membership below
        if (!this.dirty.has(host)) {
          if (!this.wanted(host)) continue;
          const list = deltaOnly.get(host);
          if (list) list.push(delta);
          else deltaOnly.set(host, [delta]);
          continue;
        }
        this.emit(host, hv, delta);
      }
    }
    this.pendingDeltas.clear();
    // Sets first in the flush order: a list of deltas to distinct sets is in order.
    for (const [host, updates] of deltaOnly) this.sink.onHostUpdates(host, this.revision, updates);
    // One member array per set per flush, shared by every host that needs it.
    const fullMembers = new Map<string, string[]>();
    const membersOf = (name: string) => {
      let m = fullMembers.get(name);
      if (!m) fullMembers.set(name, (m = [...(this.setMembers.get(name)?.keys() ?? [])]));
      return m;
    };
    for (const host of this.dirty) {
      const hv = this.hosts.get(host)!;
      hv.layout.renderDirty();
      if (!this.wanted(host)) {
        hv.pendingFull.clear();
        hv.out.clear();
        continue;
      }
      for (const name of hv.pendingFull) {
        hv.out.push({ type: "ipset-update", name, family: hv.setRefs.get(name)!.family, members: membersOf(name) });
      }
      hv.pendingFull.clear();
      const updates = hv.out.drain();
      if (updates.length) this.sink.onHostUpdates(host, this.revision, updates);
    }
    this.dirty.clear();
  }

  private wanted(host: string): boolean {
    return this.listenAll || this.subscribed.has(host);
  }

  /**
   * From now on, flushes hand this host's updates to the sink. Creates the
   * host's view (its entry chains, empty roots and layout sets) if there is none;
   * what creating it produces is not emitted: the subscriber starts from
   * snapshot(), which holds it. Idempotent.
   */
  subscribe(host: string): void {
    if (!this.hosts.has(host)) {
      const hv = this.host(host);
      hv.layout.renderDirty();
      hv.out.clear();
      this.dirty.delete(host);
    }
    this.subscribed.add(host);
  }

  /**
   * The host's last listener left. Its view is freed when it has no
   * endpoints (a driver that connected and went away): without this, every
   * distinct name ever said in a hello would keep a view for good. Returns
   * whether the view was freed; a later subscribe() or endpoint recreates it.
   */
  unsubscribe(host: string): boolean {
    this.subscribed.delete(host);
    const hv = this.hosts.get(host);
    if (!hv || hv.endpoints.size > 0 || this.wanted(host)) return false;
    this.hosts.delete(host);
    this.dirty.delete(host);
    return true;
  }

  /**
   * Complete desired state of a host, as of the last flush. A query: it
   * never flushes, never emits and changes nothing (a host without a view
   * gets what a fresh view would hold). Call it between batches — during
   * one (changes applied, flush not yet called) it throws.
   */
  snapshot(host: string): { revision: number; updates: HostUpdate[] } {
    if (this.dirty.size > 0 || this.pendingDeltas.size > 0) throw new Error("CalcGraph.snapshot() inside an unflushed batch");
    const hv = this.hosts.get(host) ?? this.freshView();
    const c = new UpdateCoalescer();
    for (const [name, ref] of hv.setRefs) {
      c.push({ type: "ipset-update", name, family: ref.family, members: [...(this.setMembers.get(name)?.keys() ?? [])] });
    }
    const own = hv.layout.contents();
    for (const set of own.sets) c.push({ type: "ipset-update", name: set.name, family: set.family, members: [...set.members] });
    for (const chain of own.chains) c.push({ type: "chain-update", chain });
    for (const id of hv.profileRefs.keys()) {
      for (const chain of this.rendered.get(id)?.chains ?? []) c.push({ type: "chain-update", chain });
    }
    for (const key of hv.endpoints) {
      c.push(endpointUpdate(key, this.endpoints.get(key)!));
    }
    return { revision: this.revision, updates: c.drain() };
  }

  hostNames(): string[] {
    return [...this.hosts.keys()];
  }

  // ---------------------------------------------------------------- helpers

  private host(name: string): HostView {
    const existing = this.hosts.get(name);
    if (existing) return existing;
    const hv = new HostView((o) => this.newLayout(o), (v) => ({ emit: (u) => this.emit(name, v, u), touch: () => this.dirty.add(name) }));
    this.hosts.set(name, hv);
    return hv;
  }

  private newLayout(out: HostOutput): HostLayout {
    return new SetHostLayout(out, this.cfg, this.profileExists);
  }

  /** What a host with no endpoints holds; not stored, nothing emitted. */
  private freshView(): HostView {
    return new HostView((o) => this.newLayout(o), () => ({ emit: () => undefined, touch: () => undefined }));
  }

  private emit(host: string, hv: HostView, u: HostUpdate): void {
    if (this.wanted(host)) hv.out.push(u);
    this.dirty.add(host);
  }

  private readonly profileExists = (id: string) => this.profiles.has(id);

  /** A profile came or went: its users' members move between the position's profile set and missing set. */
  private rerenderUsers(profileId: string): void {
    const hosts = new Set<string>();
    for (const key of this.profileUsers.get(profileId) ?? []) hosts.add(this.endpoints.get(key)!.host);
    for (const host of hosts) this.hosts.get(host)!.layout.profilesChanged(profileId);
  }

  private addUse(host: string, hv: HostView, id: string, key: string): void {
    let users = this.profileUsers.get(id);
    if (!users) this.profileUsers.set(id, (users = new Set()));
    users.add(key);
    const n = hv.profileRefs.get(id) ?? 0;
    hv.profileRefs.set(id, n + 1);
    if (n > 0) return;
    let hosts = this.profileHosts.get(id);
    if (!hosts) this.profileHosts.set(id, (hosts = new Set()));
    hosts.add(host);
    const r = this.rendered.get(id);
    if (r) this.attachProfile(host, hv, r);
  }

  private dropUse(host: string, hv: HostView, id: string, key: string): void {
    const users = this.profileUsers.get(id);
    users?.delete(key);
    if (users?.size === 0) this.profileUsers.delete(id);
    const n = hv.profileRefs.get(id) ?? 0;
    if (n > 1) {
      hv.profileRefs.set(id, n - 1);
      return;
    }
    hv.profileRefs.delete(id);
    const hosts = this.profileHosts.get(id);
    hosts?.delete(host);
    if (hosts?.size === 0) this.profileHosts.delete(id);
    const r = this.rendered.get(id);
    if (r) this.detachProfile(host, hv, r);
  }

  private attachProfile(host: string, hv: HostView, r: RenderedProfile): void {
    for (const [name, s] of r.sets) this.incSetRef(host, hv, name, s.family);
    for (const chain of r.chains) this.emit(host, hv, { type: "chain-update", chain });
  }

  private detachProfile(host: string, hv: HostView, r: RenderedProfile): void {
    for (const c of r.chains) this.emit(host, hv, { type: "chain-remove", table: "filter", family: c.family, name: c.name });
    for (const [name] of r.sets) this.decSetRef(host, hv, name);
  }

  private incSetRef(host: string, hv: HostView, name: string, family: IpVersion): void {
    const ref = hv.setRefs.get(name);
    if (ref) {
      ref.count++;
      return;
    }
    hv.setRefs.set(name, { family, count: 1 });
    let hosts = this.setHosts.get(name);
    if (!hosts) this.setHosts.set(name, (hosts = new Set()));
    hosts.add(host);
    hv.pendingFull.add(name);
    this.dirty.add(host);
  }

  private decSetRef(host: string, hv: HostView, name: string): void {
    const ref = hv.setRefs.get(name);
    if (!ref) return;
    if (--ref.count > 0) return;
    hv.setRefs.delete(name);
    hv.pendingFull.delete(name);
    const hosts = this.setHosts.get(name);
    hosts?.delete(host);
    if (hosts?.size === 0) this.setHosts.delete(name);
    this.emit(host, hv, { type: "ipset-remove", name, family: ref.family });
  }

  private recomputeUsersContrib(profileId: string): void {
    for (const key of this.profileUsers.get(profileId) ?? []) this.updateContrib(key, this.endpoints.get(key));
  }

  /** Re-derives which tag sets an endpoint's addresses belong to. */
  private updateContrib(key: string, ep: Endpoint | undefined): void {
    const old = this.contrib.get(key);
    let next: Contribution | undefined;
    if (ep) {
      const tags = new Set<string>();
      for (const id of ep.profileIds) for (const t of this.profiles.get(id)?.tags ?? []) tags.add(t);
      // A pair's net is a member of the endpoint's tags like a fixed address (DESIGN §2.11).
      const pairs = ep.addressPairs ?? [];
      const nets = (fixed: string[], v6: boolean) => [...new Set([...fixed, ...pairs.filter((p) => p.net.includes(":") === v6).map((p) => p.net)].map(hostAddress))].sort();
      next = { tags: [...tags].sort(), v4: nets(ep.ipv4Nets, false), v6: nets(ep.ipv6Nets, true) };
    }
    if (deepEqual(old, next)) return;
    if (old) this.applyContrib(old, -1);
    if (next && next.tags.length) {
      this.contrib.set(key, next);
      this.applyContrib(next, +1);
    } else this.contrib.delete(key);
  }

  private applyContrib(c: Contribution, sign: 1 | -1): void {
    for (const tag of c.tags) {
      for (const family of FAMILIES) {
        const addrs = family === 4 ? c.v4 : c.v6;
        if (addrs.length === 0) continue;
        const name = tagSet(tag, family);
        let members = this.setMembers.get(name);
        if (!members) this.setMembers.set(name, (members = new Map()));
        let delta = this.pendingDeltas.get(name);
        if (!delta) this.pendingDeltas.set(name, (delta = { family, added: new Set(), removed: new Set() }));
        for (const a of addrs) {
          const n = (members.get(a) ?? 0) + sign;
          if (n > 0) members.set(a, n);
          else members.delete(a);
          if (sign > 0 && n === 1) { delta.removed.delete(a); delta.added.add(a); }
          if (sign < 0 && n === 0) { delta.added.delete(a); delta.removed.add(a); }
        }
        if (members.size === 0) this.setMembers.delete(name);
      }
    }
  }
}
