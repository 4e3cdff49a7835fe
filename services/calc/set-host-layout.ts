// One host's set-based layout (DESIGN §6.5, §7.4): where the host's
// endpoints sit (interface -> endpoint), which profiles sit at each position
// of their lists, the host's own sets (active, inactive, position sets,
// no-MAC, MAC sets and their list), the MAC claims, the position trees and
// the host's own chains. The calculation graph owns one per host and calls
// it through HostLayout; everything it changes goes out through the host's
// HostOutput.
//
// Cost: an endpoint change moves set members only, unless a profile
// appears at a position where no endpoint here had it (or the last one
// leaves), the longest list changes, a profile in use is created or
// deleted, or a MAC leaf changes; those re-render once, at flush, and only
// the chains they touch.
import { hostAddress, type Endpoint, type IpVersion } from "../model/index.js";
import type { CalcConfig } from "./calc-config.js";
import { chainKey, sameRules, type ChainDef } from "./desired-state.js";
import { reportedDrop } from "./render-flow-reports.js";
import type { HostLayout, HostOutput, LocalSet } from "./host-layout.js";
import {
  ADMIT_CHAIN, ENTRY_CHAINS, activeSet, endpointMacSet, inactiveSet, macListSet, macScopeNodeSet, macSet, missingSet, networkMacListSet, networkScopeSet, noMacSet, positionNodeSet,
  positionSet, profileKey,
} from "./names.js";
import { prefixTree, type PrefixEntry, type PrefixTree } from "./prefix-tree.js";
import { macScopeTree, positionChainNames, renderEntryChains, renderMacChains, renderPositionDispatch, renderWorkloadChains, type MacCheck, type MacEntry } from "./render-dispatch.js";

const FAMILIES: readonly IpVersion[] = [4, 6];

/** One endpoint's claim of a MAC for an IPv4 address, in its network's MAC set (rank 0: a fixed IP; 1: a pair). */
interface Claim {
  set: string;
  list: string;
  ip: string;
  mac: string;
  rank: 0 | 1;
}

/** What an interface contributes, derived from its endpoint when that changes. */
interface Placement {
  /**
   * Active endpoints: where each profile of the list is a member, by
   * position ("<k>\t<profile key>", or "<k>\t" where it is missing).
   */
  positions?: readonly string[];
  profileIds?: readonly string[];
  /** The endpoint's network: its MAC scope lives while an endpoint here names it. */
  network?: string;
  /** IPv4 entries no MAC set can hold: the endpoint's leaf chain (whatever its state). */
  v4Leaf?: readonly MacEntry[];
  /** The IPv6 check of the interface tree (no MAC set type holds IPv6 addresses). */
  v6Check?: MacCheck;
  /** [set name, family, member]: the interface's own members. */
  members: [string, IpVersion, string][];
  claims: Claim[];
}

interface Entry extends MacEntry {
  fixed: boolean;
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** A prefix-tree line, comparable. */
const entryKey = (e: PrefixEntry) => ("leaf" in e ? `l${e.leaf}` : `c${e.child}`);

/** An endpoint's (net, MAC) entries without duplicates, sorted: its leaf chain's rules. */
function leafEntries(entries: readonly Entry[]): MacEntry[] {
  const seen = new Map<string, MacEntry>();
  for (const e of entries) seen.set(`${e.net} ${e.mac ?? ""}`, e.mac === undefined ? { net: e.net } : { net: e.net, mac: e.mac });
  return [...seen.keys()].sort().map((k) => seen.get(k)!);
}

/** The IPv6 check of an endpoint's entries: one MAC for all, per-source entries, or none (no MAC anywhere). */
function v6CheckOf(entries: readonly Entry[]): MacCheck | undefined {
  if (!entries.some((e) => e.mac !== undefined)) return undefined;
  const macs = new Set(entries.map((e) => e.mac));
  return macs.size === 1 ? { mac: [...macs][0]! } : { entries: leafEntries(entries) };
}

/**
 * An endpoint's IPv6 MAC check, as its interface tree line says it: also
 * sent to the driver with the endpoint, which renders it for a bridged
 * port, where the tree's `-i <tap>` never matches (DESIGN §6.3).
 */
export function ipv6MacCheck(ep: Endpoint): MacCheck | undefined {
  const mac = ep.mac?.toUpperCase();
  const entries: Entry[] = ep.ipv6Nets.map((n) => ({ net: hostAddress(n), mac, fixed: true }));
  for (const p of ep.addressPairs ?? []) if (p.net.includes(":")) entries.push({ net: hostAddress(p.net), mac: p.mac?.toUpperCase() ?? mac, fixed: false });
  return v6CheckOf(entries);
}

/**
 * An interface's placement (DESIGN §6.5, §2.10, §2.11). Fixed addresses and
 * pairs are members alike: of the inactive set, or of the active set and,
 * per position of the profile list, the set of the profile there (or the
 * position's missing set when that profile does not exist). The MAC check, IPv4:
 * every (address, MAC) entry with one MAC is a claim in the MAC sets of the
 * endpoint's network (and, off the default network, a member of the
 * network's scope set); entries without any MAC are no-MAC members (a CIDR
 * too); an endpoint with a CIDR pair that has a MAC, or an address allowed
 * with two MACs, has a leaf chain instead. IPv6: one MAC for all sources is
 * the interface tree's one line, different MACs the endpoint's leaf chain.
 */
function placement(ep: Endpoint, name: string, exists: (profileId: string) => boolean): Placement {
  const active = ep.state === "active";
  const positions = active ? ep.profileIds.map((id, k) => `${k}\t${exists(id) ? profileKey(id) : ""}`) : undefined;
  const mac = ep.mac?.toUpperCase();
  const entries: Record<IpVersion, Entry[]> = { 4: [], 6: [] };
  for (const n of ep.ipv4Nets) entries[4].push({ net: hostAddress(n), mac, fixed: true });
  for (const n of ep.ipv6Nets) entries[6].push({ net: hostAddress(n), mac, fixed: true });
  for (const p of ep.addressPairs ?? []) entries[p.net.includes(":") ? 6 : 4].push({ net: hostAddress(p.net), mac: p.mac?.toUpperCase() ?? mac, fixed: false });
  const members: Placement["members"] = [];
  const seen = new Set<string>();
  const member = (set: string, f: IpVersion, m: string) => {
    if (seen.has(`${set}\t${m}`)) return;
    seen.add(`${set}\t${m}`);
    members.push([set, f, m]);
  };
  for (const f of FAMILIES) {
    const sets = positions ? [activeSet(f), ...positions.map((p) => positionSetOf(p, f))] : [inactiveSet(f)];
    for (const set of sets) for (const e of entries[f]) member(set, f, `${e.net},${name}`);
  }
  // IPv4 by address: which MACs each host address may use (any entry without one: any MAC).
  const byAddr = new Map<string, { macs: Set<string>; any: boolean; fixed: boolean }>();
  let leaf = false;
  for (const e of entries[4]) {
    if (e.net.includes("/")) {
      if (e.mac !== undefined) leaf = true; // a CIDR cannot be a bitmap member
      continue;
    }
    let g = byAddr.get(e.net);
    if (!g) byAddr.set(e.net, (g = { macs: new Set(), any: false, fixed: false }));
    if (e.mac === undefined) g.any = true;
    else g.macs.add(e.mac);
    if (e.fixed) g.fixed = true;
  }
  for (const g of byAddr.values()) if (!g.any && g.macs.size > 1) leaf = true; // a bitmap holds one MAC per address
  const claims: Claim[] = [];
  const v4Leaf = leaf ? leafEntries(entries[4]) : undefined;
  // Only active endpoints claim (an inactive one is dropped first anyway; its
  // claims would only get in an active one's way); leaf chains stay whatever
  // the state, so (de)activation is set members only.
  if (active && v4Leaf) for (const e of v4Leaf) member(endpointMacSet(name), 4, `${e.net},${name}`);
  if (active && !v4Leaf) {
    for (const e of entries[4]) if (e.mac === undefined) member(noMacSet, 4, `${e.net},${name}`);
    for (const [ip, g] of byAddr) {
      if (g.any) continue;
      const list = ep.network === undefined ? macListSet : networkMacListSet(ep.network);
      claims.push({ set: macSet(ip, ep.network), list, ip, mac: [...g.macs][0]!, rank: g.fixed ? 0 : 1 });
      if (ep.network !== undefined) member(networkScopeSet(ep.network), 4, `${ip},${name}`);
    }
  }
  const base = { network: ep.network, v4Leaf, v6Check: v6CheckOf(entries[6]), members, claims };
  return active ? { positions, profileIds: ep.profileIds, ...base } : base;
}

/** The set of a placement's position entry ("<k>\t<key>", "<k>\t" for missing) in one family. */
function positionSetOf(position: string, family: IpVersion): string {
  const tab = position.indexOf("\t");
  const k = Number(position.slice(0, tab));
  const key = position.slice(tab + 1);
  return key ? positionSet(k, key, family) : missingSet(k, family);
}

/** What a host has at one position: profile key -> (profile id, endpoints); endpoints whose profile there is missing. */
interface Position {
  profiles: Map<string, { id: string; count: number }>;
  missing: number;
}

export class SetHostLayout implements HostLayout {
  /** Interface name -> the endpoints on it, by key (more than one is a conflict: nothing of either is placed). */
  private readonly byName = new Map<string, Map<string, Endpoint>>();
  /** Interface -> the endpoint whose members and MAC it carries now. */
  private readonly placed = new Map<string, Endpoint>();
  /** Interface -> what it carries now (as placed: re-placing compares with this). */
  private readonly placements = new Map<string, Placement>();
  /** Profile id -> interfaces whose active endpoint lists it (re-placed when it is created or deleted). */
  private readonly usersOf = new Map<string, Set<string>>();
  /** Position -> what the host's active endpoints have there. */
  private readonly positions = new Map<number, Position>();
  /** The host's own sets, by name. */
  private readonly local = new Map<string, { family: IpVersion; members: Set<string> }>();
  /** The host's own chains: entry and workload chains, position trees, MAC chains. */
  private readonly chains = new Map<string, ChainDef>();
  /** IPv6 interface tree: interface -> its check. */
  private readonly v6Checks = new Map<string, MacCheck>();
  /** IPv4 endpoint leaves of the MAC scope tree: interface -> entries. */
  private readonly v4Leaves = new Map<string, readonly MacEntry[]>();
  /** Networks named by endpoints placed here -> how many: each has a MAC scope (list set, scope set, chain). */
  private readonly networks = new Map<string, number>();
  /**
   * MAC set + IPv4 address -> per rank (fixed IPs, pairs), MAC -> how many
   * active endpoints here claim it. A MAC set holds one MAC per address: the
   * best rank claimed decides ("fixed IPs win"), and it gets a member only
   * when exactly one MAC is claimed at that rank (two endpoints disagreeing
   * get none: fail closed).
   */
  private readonly macClaims = new Map<string, [Map<string, number>, Map<string, number>]>();
  /** MAC set (per /16 and network) -> claims in it: the set lives while it has any. */
  private readonly macSetClaims = new Map<string, number>();
  /** Leaf set -> the node sets above it (position trees, MAC scope tree): members go to both. */
  private readonly above = new Map<string, string[]>();
  /** Left to render at flush: positions whose profiles (or missing line) changed; the MAC tree. */
  private readonly stale = { positions: new Set<number>(), macs: false };
  /** Position -> its tree and missing line as last rendered. */
  private readonly rendered = new Map<number, { tree: PrefixTree; missing: boolean }>();
  /** How many positions the workload chains were last rendered with. */
  private renderedPositions = 0;
  /** Keys of the MAC chains, as last rendered. */
  private macKeys = new Set<string>();
  /** What deriveNodeSets last derived, per tree (each position's, the MAC scope tree). */
  private readonly positionNodeMemo = new Map<number, NodeMemo>();
  private readonly macNodeMemo: NodeMemo = { nodes: new Map(), leaves: new Set() };

  /**
   * Creates the host's sets and chains of a host without endpoints, emitting
   * them. `exists`: whether a profile exists (a missing one at a position
   * denies there).
   */
  constructor(private readonly out: HostOutput, private readonly cfg: CalcConfig, private readonly exists: (profileId: string) => boolean) {
    for (const family of FAMILIES) {
      this.createLocal(inactiveSet(family), family, []);
      this.createLocal(activeSet(family), family, []);
    }
    this.createLocal(noMacSet, 4, []);
    this.createLocal(macListSet, 4, []);
    // "accept" goes through the driver's admit chain, which marks the
    // connection judged in the current epoch (DESIGN §6.14).
    const toHost = cfg.workloadToHost === "accept" ? [`-j ${ENTRY_CHAINS.fromWorkload}`, `-g ${ADMIT_CHAIN}`] : reportedDrop(cfg, "", "h", ENTRY_CHAINS.workloadToHost);
    for (const family of FAMILIES) {
      this.setChain({ table: "filter", family, name: ENTRY_CHAINS.workloadToHost, rules: toHost });
      for (const c of renderEntryChains(family, cfg)) this.setChain(c);
      for (const c of renderWorkloadChains(0, family, cfg)) this.setChain(c);
    }
    this.stale.macs = true;
    this.renderDirty();
  }

  endpointOnInterface(name: string, key: string, ep: Endpoint | undefined): void {
    let eps = this.byName.get(name);
    if (ep) {
      if (!eps) this.byName.set(name, (eps = new Map()));
      eps.set(key, ep);
    } else if (eps) {
      eps.delete(key);
      if (eps.size === 0) this.byName.delete(name);
    }
    this.place(name);
  }

  /**
   * A profile that endpoints here list was created or deleted: their
   * members move between the position's profile set and its missing set
   * (set deltas; the position's lines at flush).
   */
  profilesChanged(profileId: string): void {
    for (const name of [...(this.usersOf.get(profileId) ?? [])]) this.place(name, true);
  }

  renderDirty(): void {
    if (!this.stale.positions.size && !this.stale.macs && this.positionCount() === this.renderedPositions) return;
    this.render();
  }

  contents(): { sets: Iterable<LocalSet>; chains: Iterable<ChainDef> } {
    return {
      sets: [...this.local].map(([name, s]) => ({ name, family: s.family, members: s.members })),
      chains: this.chains.values(),
    };
  }

  // ------------------------------------------------------------- placement

  /** The one endpoint an interface carries: none, or two claiming it (fail closed, "no endpoint"), is undefined. */
  private endpointOn(name: string): Endpoint | undefined {
    const eps = this.byName.get(name);
    return eps?.size === 1 ? eps.values().next().value : undefined;
  }

  /**
   * Moves an interface's set members, position references and MAC claims to
   * what its endpoint says now (`again`: the same endpoint, re-placed
   * because a profile it lists came or went): set deltas only, unless a
   * profile appears at a position or leaves it, a network appears on the
   * host or leaves it, or a MAC leaf (IPv4 leaf chain, IPv6 tree line)
   * changes (then chains are re-rendered at flush).
   */
  private place(name: string, again = false): void {
    const before = this.placed.get(name);
    const after = this.endpointOn(name);
    if (before === after && !again) return;
    const prev = this.placements.get(name);
    const next = after && placement(after, name, this.exists);
    // What members need exists first: position sets, a network's sets, the leaf set.
    const prevPos = new Set(prev?.positions);
    const nextPos = new Set(next?.positions);
    for (const p of nextPos) if (!prevPos.has(p)) this.positionRef(p, after!.profileIds, +1);
    if (next?.network !== undefined && next.network !== prev?.network) this.networkRef(next.network, +1);
    if (next?.v4Leaf && !prev?.v4Leaf) this.createLocal(endpointMacSet(name), 4, []);
    const claimKey = (c: Claim) => `${c.set}\t${c.ip}\t${c.mac}\t${c.rank}`;
    const nextClaims = new Set(next?.claims.map(claimKey));
    const prevClaims = new Set(prev?.claims.map(claimKey));
    // Claims in before claims out: a MAC set keeps living through a change of MAC.
    for (const c of next?.claims ?? []) if (!prevClaims.has(claimKey(c))) this.macClaim(c, +1);
    const key = (m: [string, IpVersion, string]) => `${m[0]}\t${m[2]}`;
    const nextKeys = new Set(next?.members.map(key));
    const prevKeys = new Set(prev?.members.map(key));
    for (const m of prev?.members ?? []) if (!nextKeys.has(key(m))) this.localChange(m[0], m[1], m[2], false);
    for (const m of next?.members ?? []) if (!prevKeys.has(key(m))) this.localChange(m[0], m[1], m[2], true);
    for (const c of prev?.claims ?? []) if (!nextClaims.has(claimKey(c))) this.macClaim(c, -1);
    if (prev?.v4Leaf && !next?.v4Leaf) this.removeLocal(endpointMacSet(name));
    if (prev?.network !== undefined && prev.network !== next?.network) this.networkRef(prev.network, -1);
    for (const p of prevPos) if (!nextPos.has(p)) this.positionRef(p, prev!.profileIds!, -1);
    if (!sameJson(prev?.v4Leaf, next?.v4Leaf)) {
      if (next?.v4Leaf) this.v4Leaves.set(name, next.v4Leaf);
      else this.v4Leaves.delete(name);
      this.macsStale();
    }
    if (!sameJson(prev?.v6Check, next?.v6Check)) {
      if (next?.v6Check) this.v6Checks.set(name, next.v6Check);
      else this.v6Checks.delete(name);
      this.macsStale();
    }
    for (const id of prev?.profileIds ?? []) {
      const u = this.usersOf.get(id);
      if (u && u.delete(name) && !u.size) this.usersOf.delete(id);
    }
    for (const id of next?.profileIds ?? []) {
      let u = this.usersOf.get(id);
      if (!u) this.usersOf.set(id, (u = new Set()));
      u.add(name);
    }
    if (after) this.placed.set(name, after);
    else this.placed.delete(name);
    if (next) this.placements.set(name, next);
    else this.placements.delete(name);
  }

  private macsStale(): void {
    this.stale.macs = true;
    this.out.touch();
  }

  /** A network's MAC scope on this host: its list set and scope set live while an endpoint here names the network. */
  private networkRef(network: string, sign: 1 | -1): void {
    const n = (this.networks.get(network) ?? 0) + sign;
    if (n > 0) this.networks.set(network, n);
    else this.networks.delete(network);
    if (sign > 0 && n === 1) {
      this.createLocal(networkMacListSet(network), 4, []);
      this.createLocal(networkScopeSet(network), 4, []);
      this.macsStale();
    } else if (sign < 0 && n === 0) {
      this.removeLocal(networkScopeSet(network));
      this.removeLocal(networkMacListSet(network));
      this.macsStale();
    }
  }

  /**
   * One endpoint's claim of a MAC for an address, in or out. The MAC set
   * (and its entry in its network's list set) lives while it has claims; the
   * address has a member while exactly one MAC is claimed at the best rank.
   */
  private macClaim(c: Claim, sign: 1 | -1): void {
    const { set, list, ip, mac, rank } = c;
    if (sign > 0) {
      const n = this.macSetClaims.get(set) ?? 0;
      if (n === 0) {
        this.createLocal(set, 4, []);
        this.localChange(list, 4, set, true);
      }
      this.macSetClaims.set(set, n + 1);
    }
    const k = `${set}\t${ip}`;
    const ranks = this.macClaims.get(k) ?? [new Map<string, number>(), new Map<string, number>()];
    const only = () => {
      const best = ranks[0].size ? ranks[0] : ranks[1];
      return best.size === 1 ? [...best.keys()][0] : undefined;
    };
    const before = only();
    const claims = ranks[rank];
    const count = (claims.get(mac) ?? 0) + sign;
    if (count > 0) claims.set(mac, count);
    else claims.delete(mac);
    if (ranks[0].size || ranks[1].size) this.macClaims.set(k, ranks);
    else this.macClaims.delete(k);
    const after = only();
    if (before !== after) {
      if (before !== undefined) this.localChange(set, 4, `${ip},${before}`, false);
      if (after !== undefined) this.localChange(set, 4, `${ip},${after}`, true);
    }
    if (sign < 0) {
      const n = (this.macSetClaims.get(set) ?? 1) - 1;
      if (n > 0) this.macSetClaims.set(set, n);
      else {
        this.macSetClaims.delete(set);
        this.localChange(list, 4, set, false);
        this.removeLocal(set);
      }
    }
  }

  /**
   * One active endpoint's profile at a position, in (+1) or out (-1): the
   * position's profile set (or its missing set) lives while some endpoint
   * here has that profile (or a missing one) there; one appearing or going
   * re-renders the position's chains at flush.
   */
  private positionRef(position: string, profileIds: readonly string[], sign: 1 | -1): void {
    const tab = position.indexOf("\t");
    const k = Number(position.slice(0, tab));
    const key = position.slice(tab + 1);
    let pos = this.positions.get(k);
    if (!pos) this.positions.set(k, (pos = { profiles: new Map(), missing: 0 }));
    let first = false;
    let last = false;
    if (!key) {
      pos.missing += sign;
      first = sign > 0 && pos.missing === 1;
      last = sign < 0 && pos.missing === 0;
    } else {
      const e = pos.profiles.get(key);
      if (sign > 0) {
        if (e) e.count++;
        else { pos.profiles.set(key, { id: profileIds[k]!, count: 1 }); first = true; }
      } else if (e && --e.count === 0) {
        pos.profiles.delete(key);
        last = true;
      }
    }
    if (!pos.profiles.size && !pos.missing) this.positions.delete(k);
    if (!first && !last) return;
    for (const f of FAMILIES) {
      const set = positionSetOf(position, f);
      if (first) this.createLocal(set, f, []);
      else this.removeLocal(set);
    }
    this.stale.positions.add(k);
    this.out.touch();
  }

  /** Positions in use: the longest active profile list here. */
  private positionCount(): number {
    let n = 0;
    for (const k of this.positions.keys()) if (k + 1 > n) n = k + 1;
    return n;
  }

  // ------------------------------------------------------------------ sets

  private createLocal(name: string, family: IpVersion, members: string[]): void {
    this.local.set(name, { family, members: new Set(members) });
    this.out.emit({ type: "ipset-update", name, family, members });
  }

  private removeLocal(name: string): void {
    const set = this.local.get(name);
    if (!set) return;
    this.local.delete(name);
    this.out.emit({ type: "ipset-remove", name, family: set.family });
  }

  /** One member in or out of a local set, and of the tree-node sets above it. */
  private localChange(name: string, family: IpVersion, member: string, add: boolean): void {
    for (const n of [name, ...(this.above.get(name) ?? [])]) {
      const set = this.local.get(n);
      if (!set) continue; // gone with its class, or a node set the next tree re-derives
      if (add ? set.members.has(member) : !set.members.has(member)) continue;
      if (add) set.members.add(member);
      else set.members.delete(member);
      this.out.emit({ type: "ipset-delta", name: n, family, added: add ? [member] : [], removed: add ? [] : [member] });
    }
  }

  // ---------------------------------------------------------------- chains

  private setChain(c: ChainDef): void {
    const key = chainKey(c.family, c.name);
    const old = this.chains.get(key);
    // A ChainDef is never mutated once emitted: the same object is the same chain.
    if (old === c || (old && sameRules(old.rules, c.rules))) return;
    this.chains.set(key, c);
    this.out.emit({ type: "chain-update", chain: c });
  }

  private removeChain(family: IpVersion, name: string): void {
    if (this.chains.delete(chainKey(family, name))) this.out.emit({ type: "chain-remove", table: "filter", family, name });
  }

  /**
   * Re-renders what is stale: the trees, node sets and chains of the
   * positions whose profiles or missing line changed (only the tree nodes
   * whose lines changed), the workload chains when the longest list
   * changed, and with `macs` the MAC scope tree's node sets and the MAC
   * chains. Removes the chains of those kinds that are no longer wanted.
   */
  private render(): void {
    const stalePositions = [...this.stale.positions].sort((a, b) => a - b);
    const macs = this.stale.macs;
    this.stale.positions.clear();
    this.stale.macs = false;
    for (const k of stalePositions) this.renderPosition(k);
    const n = this.positionCount();
    if (n !== this.renderedPositions) {
      for (const family of FAMILIES) for (const c of renderWorkloadChains(n, family, this.cfg)) this.setChain(c);
      this.renderedPositions = n;
    }
    if (macs) {
      const checks = { networks: [...this.networks.keys()], v4Leaves: this.v4Leaves, v6: this.v6Checks };
      const { tree, leafSet } = macScopeTree(checks);
      this.deriveNodeSets(tree, (key) => [leafSet.get(key)!], (prefix) => macScopeNodeSet(prefix), this.macNodeMemo);
      const keys = new Set<string>();
      for (const family of FAMILIES) {
        for (const c of renderMacChains(checks, family, this.cfg)) {
          keys.add(chainKey(family, c.name));
          this.setChain(c);
        }
      }
      this.removeAllBut(this.macKeys, keys);
      this.macKeys = keys;
    }
  }

  /**
   * Position k's tree, node sets and chains as they are now; a position no
   * endpoint reaches any more loses them all. Only the nodes whose lines
   * changed are rendered: a profile appearing at a position touches the
   * nodes on its path (more when a node splits or merges), not the tree.
   */
  private renderPosition(k: number): void {
    const pos = this.positions.get(k);
    const keys = pos ? [...pos.profiles.keys()].sort() : [];
    const tree = prefixTree(keys);
    const missing = (pos?.missing ?? 0) > 0;
    let memo = this.positionNodeMemo.get(k);
    if (!memo) this.positionNodeMemo.set(k, (memo = { nodes: new Map(), leaves: new Set() }));
    this.deriveNodeSets(tree, (key) => FAMILIES.map((f) => positionSet(k, key, f)), (prefix, leafSet) => positionNodeSet(k, prefix, this.local.get(leafSet)!.family), memo);
    const before = this.rendered.get(k);
    const gone = before ? [...before.tree.nodes.keys()].filter((prefix) => !pos || !tree.nodes.has(prefix)) : [];
    if (pos) {
      const changed = new Set<string>();
      for (const [prefix, entries] of tree.nodes) {
        const old = before?.tree.nodes.get(prefix);
        if (!old || old.length !== entries.length || old.some((e, i) => entryKey(e) !== entryKey(entries[i]!))) changed.add(prefix);
      }
      if (before?.missing !== missing) changed.add("");
      const profileOf = new Map([...pos.profiles].map(([key, e]) => [key, e.id]));
      for (const family of FAMILIES) for (const c of renderPositionDispatch({ k, tree, profileOf, missing }, family, this.cfg, changed)) this.setChain(c);
      this.rendered.set(k, { tree, missing });
    } else {
      this.rendered.delete(k);
      this.positionNodeMemo.delete(k);
    }
    for (const prefix of gone) for (const family of FAMILIES) for (const name of positionChainNames(k, prefix)) this.removeChain(family, name);
  }

  /** Removes the chains of `before` that are not in `keep`. */
  private removeAllBut(before: ReadonlySet<string>, keep: ReadonlySet<string>): void {
    for (const k of before) {
      if (keep.has(k)) continue;
      const c = this.chains.get(k);
      if (c) this.removeChain(c.family, c.name);
    }
  }

  /**
   * Node sets of a tree (a position's tree, MAC scope tree) holding the union of the
   * leaf sets below them, and which node sets lie above each leaf set (so
   * member changes reach them). Leaves never share a member (one interface,
   * one endpoint): plain unions.
   *
   * Cost follows the tree, not the host: what is no longer wanted is found
   * in the tree's own memo (its node sets, the leaf sets it gave `above`
   * entries), never by scanning every set of the host (a host's other
   * positions and MAC sets are not this tree's business).
   */
  private deriveNodeSets(tree: PrefixTree, leafSets: (leaf: string) => string[], nodeSetOf: (prefix: string, leafSet: string) => string, memo: NodeMemo): void {
    // Node set -> the leaf sets below it, in tree order.
    const below = new Map<string, { family: IpVersion; leaves: string[] }>();
    const leaves = new Set<string>();
    for (const [leaf, path] of tree.paths) {
      for (const ls of leafSets(leaf)) {
        const leafLocal = this.local.get(ls);
        if (!leafLocal) continue;
        const nodes = path.map((prefix) => nodeSetOf(prefix, ls));
        const was = this.above.get(ls);
        if (!nodes.length) this.above.delete(ls);
        else {
          leaves.add(ls);
          if (!was || was.length !== nodes.length || was.some((n, i) => n !== nodes[i])) this.above.set(ls, nodes);
        }
        for (const n of nodes) {
          let b = below.get(n);
          if (!b) below.set(n, (b = { family: leafLocal.family, leaves: [] }));
          b.leaves.push(ls);
        }
      }
    }
    for (const [n, b] of below) {
      // The same leaves as when derived: member changes since reached it
      // through `above` (localChange), so it is current.
      const sig = b.leaves.join(" ");
      if (memo.nodes.get(n) === sig && this.local.has(n)) continue;
      const members = new Set<string>();
      for (const ls of b.leaves) for (const m of this.local.get(ls)!.members) members.add(m);
      const have = this.local.get(n);
      if (!have || have.members.size !== members.size || [...members].some((m) => !have.members.has(m))) this.createLocal(n, b.family, [...members]);
      memo.nodes.set(n, sig);
    }
    for (const n of memo.nodes.keys()) {
      if (!below.has(n)) { this.removeLocal(n); memo.nodes.delete(n); }
    }
    // A leaf set this tree no longer places keeps no path to node sets that are gone.
    for (const ls of memo.leaves) {
      if (leaves.has(ls)) continue;
      const nodes = this.above.get(ls);
      if (nodes?.some((n) => !below.has(n))) this.above.delete(ls);
      else if (nodes) leaves.add(ls);
    }
    memo.leaves = leaves;
  }

}

/** What deriveNodeSets derived for one tree: node set -> its leaf sets' signature; the leaf sets given `above` entries. */
interface NodeMemo {
  nodes: Map<string, string>;
  leaves: Set<string>;
}
