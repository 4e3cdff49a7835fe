// The calculation core: model events in, per-host desired-state updates out.
// Pure: no etcd, no gRPC, no timers, no processes. Feed it upserts/deletes,
// call flush(revision) at the end of each batch (one etcd revision), and it
// calls the sink once per affected host with that host's coalesced updates.
//
// Incrementality (DESIGN §7): a profile is rendered once and shared by all
// hosts; tag memberships are reference-counted globally and fanned out only
// to hosts whose profiles reference the tag; an endpoint change touches its
// own host's chains plus the sets of its tags. Nothing is ever recomputed
// "for everything".
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
import { DEFAULT_CALC_CONFIG, chainKey, sameRules, type CalcConfig, type ChainDef, type HostUpdate } from "./desired-state.js";
import { reportedDrop } from "./flow-log.js";
import { renderProfile, type RenderedProfile } from "./render-rules.js";
import {
  ENTRY_CHAINS, classKey, classSet, inactiveSet, macListSet, macSet, noMacSet, nodeSet, tagSet,
} from "./names.js";
import { prefixTree, type PrefixTree } from "./prefix-tree.js";
import { renderClassChains, renderClassDispatch, renderMacChains } from "./render-classes.js";
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

class HostView {
  readonly out = new UpdateCoalescer();
  /** Host-specific chains: entry chains, class chains and trees, MAC tree. */
  readonly chains = new Map<string, ChainDef>();
  /** Interface name -> endpoint keys using it (more than one is a conflict). */
  readonly byName = new Map<string, Set<string>>();
  readonly endpoints = new Set<string>();
  readonly profileRefs = new Map<string, number>();
  readonly setRefs = new Map<string, { family: IpVersion; count: number }>();
  /**
   * Sets newly referenced in this batch: their full membership is read from
   * the global state at flush time (once), and deltas skip them.
   */
  readonly pendingFull = new Set<string>();
  /** Rebuilt once, at flush: the class tree, node sets and roots (classes came or went). */
  dispatchDirty = false;
  /** A profile appeared or went; the class chains are re-rendered at flush. */
  classChainsDirty = false;
  /** An interface's MAC came, went or changed; the MAC tree is re-rendered at flush. */
  macDirty = false;
  /**
   * Interface -> the endpoint whose class, MAC and set members it carries
   * (what it contributes is derived from the endpoint when it changes: only
   * the reference is kept).
   */
  readonly placed = new Map<string, Endpoint>();
  /** Ordered profile lists in use by active endpoints here, by class key. */
  readonly classes = new Map<string, { profileIds: readonly string[]; count: number }>();
  /** The host's own sets (classification), by name. */
  readonly local = new Map<string, { family: IpVersion; members: Set<string> }>();
  /** Per family: interface -> MAC, for endpoints whose MAC the interface tree checks (IPv6 today). */
  readonly treeMacs: Record<IpVersion, Map<string, string>> = { 4: new Map(), 6: new Map() };
  /**
   * IPv4 address -> MAC -> how many active endpoints here claim it. A MAC
   * set holds one MAC per address: it gets one only when exactly one MAC is
   * claimed (two endpoints disagreeing get none: fail closed).
   */
  readonly macClaims = new Map<string, Map<string, number>>();
  /** MAC set (per /16) -> claims in it: the set lives while it has any. */
  readonly macSetClaims = new Map<string, number>();
  /** The class tree the current node sets follow. */
  tree: PrefixTree | undefined;
}

/** What an interface contributes in the set-based layout (DESIGN §6.5), derived when its endpoint changes. */
interface Placement {
  cls?: string;
  profileIds?: readonly string[];
  /** The MAC the interface tree checks, per family (IPv6: no MAC set type holds IPv6 addresses). */
  treeMac: Partial<Record<IpVersion, string>>;
  /** [set name, family, member]. */
  members: [string, IpVersion, string][];
}

function placement(ep: Endpoint, name: string): Placement {
  const active = ep.state === "active";
  const cls = active ? classKey(ep.profileIds) : undefined;
  const members: Placement["members"] = [];
  for (const f of FAMILIES) {
    const set = cls !== undefined ? classSet(cls, f) : inactiveSet(f);
    for (const net of f === 4 ? ep.ipv4Nets : ep.ipv6Nets) members.push([set, f, `${hostAddress(net)},${name}`]);
  }
  // MAC: IPv4 addresses (host routes: validation allows nothing else) of
  // active endpoints by MAC sets (an inactive one is dropped first anyway;
  // its claims would only get in an active one's way), IPv6 by the
  // interface tree, whatever the state (its chains stay as they are when
  // an endpoint is (de)activated).
  const treeMac: Placement["treeMac"] = {};
  const mac = ep.mac?.toUpperCase();
  if (active) {
    for (const net of ep.ipv4Nets) {
      const a = hostAddress(net);
      members.push(mac !== undefined ? [macSet(a), 4, `${a},${mac}`] : [noMacSet, 4, `${a},${name}`]);
    }
  }
  if (mac !== undefined && ep.ipv6Nets.length) treeMac[6] = mac;
  return active ? { cls, profileIds: ep.profileIds, treeMac, members } : { treeMac, members };
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
  /** Set-based layout: class chains shared by the hosts that have the class, and how many do. */
  private readonly sharedClasses = new Map<string, { users: number; exists: string; chains: Record<IpVersion, ChainDef[]> }>();
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
    for (const host of this.profileHosts.get(p.id) ?? []) {
      const hv = this.hosts.get(host)!;
      if (!oldR) {
        this.attachProfile(host, hv, newR);
        continue;
      }
      const before = new Map(oldR.chains.map((c) => [chainKey(c.family, c.name), c]));
      for (const c of newR.chains) {
        const o = before.get(chainKey(c.family, c.name));
        if (!o || !sameRules(o.rules, c.rules)) this.emit(host, hv, { type: "chain-update", chain: c });
      }
      for (const [name, s] of newR.sets) if (!oldR.sets.has(name)) this.incSetRef(host, hv, name, s.family);
      for (const [name] of oldR.sets) if (!newR.sets.has(name)) this.decSetRef(host, hv, name);
    }
    if (!old) this.rerenderUsers(p.id);
    if (!old || !deepEqual(old.tags, p.tags)) this.recomputeUsersContrib(p.id);
  }

  deleteProfile(id: string): void {
    const oldR = this.rendered.get(id);
    if (!oldR) return;
    this.profiles.delete(id);
    this.rendered.delete(id);
    // Endpoint chains first stop jumping to the profile (they DROP in its
    // place), then the profile's chains go: the coalescer orders it so.
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
    if (old && old.name !== ep.name) {
      this.unbindName(ep.host, hv, old.name, key);
    }
    if (!old || old.name !== ep.name) {
      let keys = hv.byName.get(ep.name);
      if (!keys) hv.byName.set(ep.name, (keys = new Set()));
      keys.add(key);
    }
    this.placeName(ep.host, hv, ep.name);
    this.emit(ep.host, hv, { type: "endpoint-update", key, interfaceName: ep.name });
    this.updateContrib(key, ep);
  }

  deleteEndpoint(key: string): void {
    const old = this.endpoints.get(key);
    if (!old) return;
    const hv = this.hosts.get(old.host)!;
    this.endpoints.delete(key);
    hv.endpoints.delete(key);
    this.unbindName(old.host, hv, old.name, key);
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
      this.renderDirtyLayout(host, hv);
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
   * host's view (its entry chains and empty dispatch tree) if there is none;
   * what creating it produces is not emitted: the subscriber starts from
   * snapshot(), which holds it. Idempotent.
   */
  subscribe(host: string): void {
    if (!this.hosts.has(host)) {
      const hv = this.host(host);
      this.renderDirtyLayout(host, hv);
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
    const hv = this.hosts.get(host) ?? this.freshView(host);
    const c = new UpdateCoalescer();
    for (const [name, ref] of hv.setRefs) {
      c.push({ type: "ipset-update", name, family: ref.family, members: [...(this.setMembers.get(name)?.keys() ?? [])] });
    }
    for (const [name, set] of hv.local) c.push({ type: "ipset-update", name, family: set.family, members: [...set.members] });
    for (const chain of hv.chains.values()) c.push({ type: "chain-update", chain });
    for (const id of hv.profileRefs.keys()) {
      for (const chain of this.rendered.get(id)?.chains ?? []) c.push({ type: "chain-update", chain });
    }
    for (const key of hv.endpoints) {
      c.push({ type: "endpoint-update", key, interfaceName: this.endpoints.get(key)!.name });
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
    const hv = new HostView();
    this.hosts.set(name, hv);
    this.initView(name, hv);
    return hv;
  }

  /** What a host with no endpoints holds; not stored, nothing emitted. */
  private freshView(name: string): HostView {
    const hv = new HostView();
    this.initView(name, hv, true);
    return hv;
  }

  /** Entry chains and an empty dispatch tree; `detached`: set directly, nothing emitted or marked dirty. */
  private initView(name: string, hv: HostView, detached = false): void {
    const toHost = this.cfg.workloadToHost === "accept" ? [`-j ${ENTRY_CHAINS.fromWorkload}`, "-j ACCEPT"] : reportedDrop(this.cfg, "", "h", ENTRY_CHAINS.workloadToHost);
    const entry: ChainDef[] = FAMILIES.map((family) => ({ table: "filter", family, name: ENTRY_CHAINS.workloadToHost, rules: toHost }));
    if (detached) {
      for (const c of entry) hv.chains.set(chainKey(c.family, c.name), c);
      // The same sets, in the same order, as a stored view creates them.
      for (const family of FAMILIES) hv.local.set(inactiveSet(family), { family, members: new Set() });
      hv.local.set(noMacSet, { family: 4, members: new Set() });
      hv.local.set(macListSet, { family: 4, members: new Set() });
      for (const family of FAMILIES) for (const c of this.layoutChains(hv, family)) hv.chains.set(chainKey(family, c.name), c);
      return;
    }
    this.createLayoutSets(name, hv);
    for (const c of entry) this.setChain(name, hv, c);
    this.renderSetsLayout(name, hv, { classes: true, classChains: true, macs: true });
  }

  /** The set-based layout's sets every host has. */
  private createLayoutSets(host: string, hv: HostView): void {
    for (const family of FAMILIES) this.createLocal(host, hv, inactiveSet(family), family, []);
    this.createLocal(host, hv, noMacSet, 4, []);
    this.createLocal(host, hv, macListSet, 4, []);
  }

  /** What a batch left to render once per host: class tree and roots, class chains, MAC tree. */
  private renderDirtyLayout(host: string, hv: HostView): void {
    if (!hv.dispatchDirty && !hv.classChainsDirty && !hv.macDirty) return;
    const what = { classes: hv.dispatchDirty, classChains: hv.classChainsDirty, macs: hv.macDirty };
    hv.dispatchDirty = hv.classChainsDirty = hv.macDirty = false;
    this.renderSetsLayout(host, hv, what);
  }

  private markDispatch(host: string, hv: HostView): void {
    hv.dispatchDirty = true;
    this.dirty.add(host);
  }

  private emit(host: string, hv: HostView, u: HostUpdate): void {
    if (this.wanted(host)) hv.out.push(u);
    this.dirty.add(host);
  }

  private setChain(host: string, hv: HostView, c: ChainDef): void {
    const key = chainKey(c.family, c.name);
    const old = hv.chains.get(key);
    if (old && sameRules(old.rules, c.rules)) return;
    hv.chains.set(key, c);
    this.emit(host, hv, { type: "chain-update", chain: c });
  }

  private removeChain(host: string, hv: HostView, family: IpVersion, name: string): void {
    if (hv.chains.delete(chainKey(family, name))) this.emit(host, hv, { type: "chain-remove", table: "filter", family, name });
  }

  private unbindName(host: string, hv: HostView, name: string, key: string): void {
    const keys = hv.byName.get(name);
    keys?.delete(key);
    if (keys && keys.size === 0) hv.byName.delete(name);
    this.placeName(host, hv, name);
  }

  private rerenderUsers(profileId: string): void {
    for (const key of this.profileUsers.get(profileId) ?? []) {
      const ep = this.endpoints.get(key)!;
      const hv = this.hosts.get(ep.host)!;
      // The class chains say whether a profile exists; re-rendered at flush.
      hv.classChainsDirty = true;
      this.dirty.add(ep.host);
    }
  }

  // ------------------------------------------------ set-based layout (§6.5)

  /** The one endpoint an interface carries: none, or two claiming it (fail closed, "no endpoint"), is undefined. */
  private endpointOn(hv: HostView, name: string): Endpoint | undefined {
    const keys = hv.byName.get(name);
    return keys?.size === 1 ? this.endpoints.get([...keys][0]!) : undefined;
  }

  /**
   * Moves an interface's set members, class reference and MAC to what its
   * endpoint says now: set deltas only, unless a class appears or goes or
   * an IPv6 MAC changes (then the host's layout chains are re-rendered at
   * flush).
   */
  private placeName(host: string, hv: HostView, name: string): void {
    const before = hv.placed.get(name);
    const after = this.endpointOn(hv, name);
    if (before === after) return;
    const prev = before && placement(before, name);
    const next = after && placement(after, name);
    if (next?.cls && next.cls !== prev?.cls) this.classRef(host, hv, next.cls, next.profileIds!, +1);
    const key = (m: [string, IpVersion, string]) => `${m[0]}\t${m[2]}`;
    const nextKeys = new Set(next?.members.map(key));
    const prevKeys = new Set(prev?.members.map(key));
    // MAC set members are claims (an address may be claimed by several endpoints); the rest are this interface's own.
    const isMac = (m: [string, IpVersion, string]) => m[0].startsWith("pal4m-");
    for (const m of prev?.members ?? []) {
      if (nextKeys.has(key(m))) continue;
      if (isMac(m)) this.macClaim(host, hv, m[0], m[2], -1);
      else this.localChange(host, hv, m[0], m[1], m[2], false, prev!.cls);
    }
    for (const m of next?.members ?? []) {
      if (prevKeys.has(key(m))) continue;
      if (isMac(m)) this.macClaim(host, hv, m[0], m[2], +1);
      else this.localChange(host, hv, m[0], m[1], m[2], true, next!.cls);
    }
    if (prev?.cls && prev.cls !== next?.cls) this.classRef(host, hv, prev.cls, prev.profileIds!, -1);
    for (const f of FAMILIES) {
      const [was, now] = [prev?.treeMac[f], next?.treeMac[f]];
      if (was === now) continue;
      if (now !== undefined) hv.treeMacs[f].set(name, now);
      else hv.treeMacs[f].delete(name);
      hv.macDirty = true;
    }
    if (hv.macDirty) this.dirty.add(host);
    if (after) hv.placed.set(name, after);
    else hv.placed.delete(name);
  }

  /**
   * One endpoint's claim `<address>,<MAC>` on a MAC set, in or out. The set
   * (and its entry in the list set) lives while it has claims; the address
   * is in it with a MAC only while exactly one MAC is claimed for it.
   */
  private macClaim(host: string, hv: HostView, set: string, claim: string, sign: 1 | -1): void {
    const comma = claim.indexOf(",");
    const [ip, mac] = [claim.slice(0, comma), claim.slice(comma + 1)];
    if (sign > 0) {
      const n = hv.macSetClaims.get(set) ?? 0;
      if (n === 0) {
        this.createLocal(host, hv, set, 4, []);
        this.localChange(host, hv, macListSet, 4, set, true, undefined);
      }
      hv.macSetClaims.set(set, n + 1);
    }
    const claims = hv.macClaims.get(ip) ?? new Map<string, number>();
    const only = () => (claims.size === 1 ? [...claims.keys()][0] : undefined);
    const before = only();
    const count = (claims.get(mac) ?? 0) + sign;
    if (count > 0) claims.set(mac, count);
    else claims.delete(mac);
    if (claims.size) hv.macClaims.set(ip, claims);
    else hv.macClaims.delete(ip);
    const after = only();
    if (before !== after) {
      if (before !== undefined) this.localChange(host, hv, set, 4, `${ip},${before}`, false, undefined);
      if (after !== undefined) this.localChange(host, hv, set, 4, `${ip},${after}`, true, undefined);
    }
    if (sign < 0) {
      const n = (hv.macSetClaims.get(set) ?? 1) - 1;
      if (n > 0) hv.macSetClaims.set(set, n);
      else {
        hv.macSetClaims.delete(set);
        this.localChange(host, hv, macListSet, 4, set, false, undefined);
        this.removeLocal(host, hv, set);
      }
    }
  }

  private classRef(host: string, hv: HostView, cls: string, profileIds: readonly string[], sign: 1 | -1): void {
    const c = hv.classes.get(cls);
    if (sign > 0) {
      if (c) { c.count++; return; }
      hv.classes.set(cls, { profileIds, count: 1 });
      const shared = this.sharedClasses.get(cls);
      if (shared) shared.users++;
      else this.sharedClasses.set(cls, { users: 1, exists: "", chains: { 4: [], 6: [] } });
      for (const f of FAMILIES) this.createLocal(host, hv, classSet(cls, f), f, []);
      this.markDispatch(host, hv);
      return;
    }
    if (!c || --c.count > 0) return;
    hv.classes.delete(cls);
    const shared = this.sharedClasses.get(cls);
    if (shared && --shared.users <= 0) this.sharedClasses.delete(cls);
    for (const f of FAMILIES) this.removeLocal(host, hv, classSet(cls, f));
    this.markDispatch(host, hv);
  }

  private createLocal(host: string, hv: HostView, name: string, family: IpVersion, members: string[]): void {
    hv.local.set(name, { family, members: new Set(members) });
    this.emit(host, hv, { type: "ipset-update", name, family, members });
  }

  private removeLocal(host: string, hv: HostView, name: string): void {
    const set = hv.local.get(name);
    if (!set) return;
    hv.local.delete(name);
    this.emit(host, hv, { type: "ipset-remove", name, family: set.family });
  }

  /** One member in or out of a local set, and of the tree-node sets above its class. */
  private localChange(host: string, hv: HostView, name: string, family: IpVersion, member: string, add: boolean, cls: string | undefined): void {
    const names = [name];
    if (cls !== undefined && name === classSet(cls, family)) {
      for (const prefix of hv.tree?.paths.get(cls) ?? []) names.push(nodeSet(prefix, family));
    }
    for (const n of names) {
      const set = hv.local.get(n);
      if (!set) continue; // gone with its class, or a node set the next tree re-derives
      if (add ? set.members.has(member) : !set.members.has(member)) continue;
      if (add) set.members.add(member);
      else set.members.delete(member);
      this.emit(host, hv, { type: "ipset-delta", name: n, family, added: add ? [member] : [], removed: add ? [] : [member] });
    }
  }

  /**
   * A class's chains, rendered once and shared by every host that has the
   * class (like profile chains): they depend only on the ordered list and on
   * which of its profiles exist. Kept while some host has the class.
   */
  private classChains(cls: string, profileIds: readonly string[], family: IpVersion): ChainDef[] {
    const exists = profileIds.map((id) => (this.profiles.has(id) ? "1" : "0")).join("");
    let entry = this.sharedClasses.get(cls);
    if (!entry) this.sharedClasses.set(cls, (entry = { users: 0, exists: "", chains: { 4: [], 6: [] } }));
    if (entry.exists !== exists || entry.chains[family].length === 0) {
      if (entry.exists !== exists) entry.chains = { 4: [], 6: [] };
      entry.exists = exists;
      entry.chains[family] = renderClassChains(cls, { profileIds }, family, (id) => this.profiles.has(id), this.cfg);
    }
    return entry.chains[family];
  }

  /** Entry chains, class chains and trees, MAC tree of one family. */
  private layoutChains(hv: HostView, family: IpVersion, what = { classes: true, classChains: true, macs: true }): ChainDef[] {
    const out: ChainDef[] = [];
    if (what.classes) out.push(...renderClassDispatch(hv.tree ?? prefixTree([]), family, this.cfg));
    if (what.classes || what.classChains) {
      for (const [cls, c] of hv.classes) out.push(...this.classChains(cls, c.profileIds, family));
    }
    if (what.macs) out.push(...renderMacChains(hv.treeMacs[family], family, this.cfg));
    return out;
  }

  /**
   * Re-renders what a batch made stale: with `classes`, the class tree, its
   * node sets, the roots and the class chains; with `classChains`, the class
   * chains (a profile came or went); with `macs`, the MAC tree. Removes the
   * chains of those kinds that are no longer wanted.
   */
  private renderSetsLayout(host: string, hv: HostView, what: { classes: boolean; classChains: boolean; macs: boolean }): void {
    if (what.classes) this.deriveClassTree(host, hv);
    const wanted = new Set<string>();
    for (const family of FAMILIES) {
      for (const c of this.layoutChains(hv, family, what)) {
        wanted.add(chainKey(family, c.name));
        this.setChain(host, hv, c);
      }
    }
    const stale = (name: string) =>
      (what.classes && /^pal-(cf_|ct_|cfn-|ctn-)/.test(name)) || (what.macs && /^pal-fm[-_]/.test(name));
    for (const [key, c] of hv.chains) {
      if (!wanted.has(key) && stale(c.name)) this.removeChain(host, hv, c.family, c.name);
    }
  }

  /** The class tree for the host's classes now, and node sets holding the union of their classes' members. */
  private deriveClassTree(host: string, hv: HostView): void {
    const tree = prefixTree([...hv.classes.keys()].sort());
    // Classes never share a member (one interface, one class): plain unions.
    const wantSets = new Map<string, { family: IpVersion; members: Set<string> }>();
    for (const [cls, path] of tree.paths) {
      for (const f of FAMILIES) {
        for (const prefix of path) {
          const n = nodeSet(prefix, f);
          let w = wantSets.get(n);
          if (!w) wantSets.set(n, (w = { family: f, members: new Set() }));
          for (const m of hv.local.get(classSet(cls, f))?.members ?? []) w.members.add(m);
        }
      }
    }
    for (const [n, w] of wantSets) {
      const have = hv.local.get(n);
      if (have && have.members.size === w.members.size && [...w.members].every((m) => have.members.has(m))) continue;
      this.createLocal(host, hv, n, w.family, [...w.members]);
    }
    for (const n of [...hv.local.keys()]) {
      if (/^pal[46]in-/.test(n) && !wantSets.has(n)) this.removeLocal(host, hv, n);
    }
    hv.tree = tree;
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
      next = { tags: [...tags].sort(), v4: ep.ipv4Nets.map(hostAddress), v6: ep.ipv6Nets.map(hostAddress) };
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
