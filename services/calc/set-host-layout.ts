// One host's set-based layout (DESIGN §6.5, §7.4): where the host's
// endpoints sit (interface -> endpoint), the classes they form, the host's
// own sets (classification, inactive, no-MAC, MAC sets and their list), the
// MAC claims, the class tree and the host's own chains. The calculation
// graph owns one per host and calls it through HostLayout; everything it
// changes goes out through the host's HostOutput.
//
// Cost: an endpoint change whose ordered profile list is already a class
// here moves set members only; a class appearing or going, a profile
// appearing or going, or an IPv6 MAC changing re-renders once, at flush.
import { hostAddress, type Endpoint, type IpVersion } from "../model/index.js";
import type { ClassChainCache } from "./class-chains.js";
import type { CalcConfig } from "./calc-config.js";
import { chainKey, sameRules, type ChainDef } from "./desired-state.js";
import { reportedDrop } from "./render-flow-reports.js";
import type { HostLayout, HostOutput, LocalSet } from "./host-layout.js";
import {
  ADMIT_CHAIN, ENTRY_CHAINS, classKey, classSet, endpointMacSet, fromClassNode, toClassNode, inactiveSet, macListSet, macScopeNodeSet, macSet, networkMacListSet, networkScopeSet, noMacSet, nodeSet,
} from "./names.js";
import { prefixTree, type PrefixEntry, type PrefixTree } from "./prefix-tree.js";
import { macScopeTree, renderClassDispatch, renderMacChains, type MacCheck, type MacEntry } from "./render-classes.js";

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
  cls?: string;
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
 * pairs are members alike (class or inactive set). The MAC check, IPv4:
 * every (address, MAC) entry with one MAC is a claim in the MAC sets of the
 * endpoint's network (and, off the default network, a member of the
 * network's scope set); entries without any MAC are no-MAC members (a CIDR
 * too); an endpoint with a CIDR pair that has a MAC, or an address allowed
 * with two MACs, has a leaf chain instead. IPv6: one MAC for all sources is
 * the interface tree's one line, different MACs the endpoint's leaf chain.
 */
function placement(ep: Endpoint, name: string): Placement {
  const active = ep.state === "active";
  const cls = active ? classKey(ep.profileIds) : undefined;
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
    const set = cls !== undefined ? classSet(cls, f) : inactiveSet(f);
    for (const e of entries[f]) member(set, f, `${e.net},${name}`);
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
  return active ? { cls, profileIds: ep.profileIds, ...base } : base;
}

export class SetHostLayout implements HostLayout {
  /** Interface name -> the endpoints on it, by key (more than one is a conflict: nothing of either is placed). */
  private readonly byName = new Map<string, Map<string, Endpoint>>();
  /** Interface -> the endpoint whose class, MAC and members it carries now. */
  private readonly placed = new Map<string, Endpoint>();
  /** Ordered profile lists in use by active endpoints here, by class key. */
  private readonly classes = new Map<string, { profileIds: readonly string[]; count: number }>();
  /** The host's own sets, by name. */
  private readonly local = new Map<string, { family: IpVersion; members: Set<string> }>();
  /** The host's own chains: entry chains, class chains and trees, MAC chains. */
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
  /** Leaf set -> the node sets above it (class tree, MAC scope tree): members go to both. */
  private readonly above = new Map<string, string[]>();
  /** Left to render at flush: classes came or went / a profile came or went / a MAC tree changed. */
  private readonly stale = { classes: false, classChains: false, macs: false };
  /**
   * Classes that came or went since the last render: when no profile came
   * or went, only their chains are rendered or removed (the others' do not
   * change), so a class appearing on a dense host costs its own chains, the
   * dispatch tree and the node sets, not every class's chains again.
   */
  private readonly classDelta = new Set<string>();
  /** Class -> the keys of the chains rendered for it (removed with it). */
  private readonly classChainKeys = new Map<string, string[]>();
  /** Keys of the MAC chains, as last rendered. */
  private macKeys = new Set<string>();
  /** Node set -> the leaf sets below it when its members were last derived (deriveNodeSets). */
  private readonly classNodeMemo = new Map<string, string>();
  private readonly macNodeMemo = new Map<string, string>();

  /** Creates the host's sets and chains of a host without endpoints, emitting them. */
  constructor(private readonly out: HostOutput, private readonly cfg: CalcConfig, private readonly classChains: ClassChainCache) {
    for (const family of FAMILIES) this.createLocal(inactiveSet(family), family, []);
    this.createLocal(noMacSet, 4, []);
    this.createLocal(macListSet, 4, []);
    // "accept" goes through the driver's admit chain, which marks the
    // connection judged in the current epoch (DESIGN §6.14).
    const toHost = cfg.workloadToHost === "accept" ? [`-j ${ENTRY_CHAINS.fromWorkload}`, `-g ${ADMIT_CHAIN}`] : reportedDrop(cfg, "", "h", ENTRY_CHAINS.workloadToHost);
    for (const family of FAMILIES) this.setChain({ table: "filter", family, name: ENTRY_CHAINS.workloadToHost, rules: toHost });
    this.render({ classes: true, classChains: true, macs: true });
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

  profilesChanged(): void {
    this.stale.classChains = true;
    this.out.touch();
  }

  renderDirty(): void {
    if (!this.stale.classes && !this.stale.classChains && !this.stale.macs) return;
    const what = { ...this.stale };
    this.stale.classes = this.stale.classChains = this.stale.macs = false;
    this.render(what);
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
   * Moves an interface's set members, class reference and MAC claims to what
   * its endpoint says now: set deltas only, unless a class appears or goes, a
   * network appears on the host or leaves it, or a MAC leaf (IPv4 leaf chain,
   * IPv6 tree line) changes (then chains are re-rendered at flush).
   */
  private place(name: string): void {
    const before = this.placed.get(name);
    const after = this.endpointOn(name);
    if (before === after) return;
    const prev = before && placement(before, name);
    const next = after && placement(after, name);
    // What members need exists first: class sets, a network's sets, the leaf set.
    if (next?.cls && next.cls !== prev?.cls) this.classRef(next.cls, next.profileIds!, +1);
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
    if (prev?.cls && prev.cls !== next?.cls) this.classRef(prev.cls, prev.profileIds!, -1);
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
    if (after) this.placed.set(name, after);
    else this.placed.delete(name);
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

  private classRef(cls: string, profileIds: readonly string[], sign: 1 | -1): void {
    const c = this.classes.get(cls);
    if (sign > 0) {
      if (c) { c.count++; return; }
      this.classes.set(cls, { profileIds, count: 1 });
      this.classDelta.add(cls);
      this.classChains.acquire(cls);
      for (const f of FAMILIES) this.createLocal(classSet(cls, f), f, []);
      this.stale.classes = true;
      this.out.touch();
      return;
    }
    if (!c || --c.count > 0) return;
    this.classes.delete(cls);
    this.classDelta.add(cls);
    this.classChains.release(cls);
    for (const f of FAMILIES) this.removeLocal(classSet(cls, f));
    this.stale.classes = true;
    this.out.touch();
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
    // Class chains are shared objects (ClassChainCache): the same object is the same chain.
    if (old === c || (old && sameRules(old.rules, c.rules))) return;
    this.chains.set(key, c);
    this.out.emit({ type: "chain-update", chain: c });
  }

  private removeChain(family: IpVersion, name: string): void {
    if (this.chains.delete(chainKey(family, name))) this.out.emit({ type: "chain-remove", table: "filter", family, name });
  }

  /**
   * Re-renders what is stale: with `classes`, the class tree, its node sets,
   * the roots and the class chains; with `classChains`, the class chains (a
   * profile came or went); with `macs`, the MAC scope tree's node sets and
   * the MAC chains. Removes the chains of those kinds that are no longer wanted.
   */
  private render(what: { classes: boolean; classChains: boolean; macs: boolean }): void {
    let changedNodes: Set<string> | undefined;
    let goneNodes: string[] = [];
    if (what.classes) {
      const tree = prefixTree([...this.classes.keys()].sort());
      this.deriveNodeSets(tree, (cls) => FAMILIES.map((f) => classSet(cls, f)), (prefix, leafSet) => nodeSet(prefix, this.local.get(leafSet)!.family), /^pal[46]in-/, this.classNodeMemo);
      // The dispatch chains of the tree nodes whose lines changed, only:
      // a class coming or going touches the nodes on its path (more when a
      // node splits or merges), not the whole tree.
      const before = this.classTree?.nodes;
      changedNodes = new Set();
      for (const [prefix, entries] of tree.nodes) {
        const old = before?.get(prefix);
        if (!old || old.length !== entries.length || old.some((e, i) => entryKey(e) !== entryKey(entries[i]!))) changedNodes.add(prefix);
      }
      goneNodes = before ? [...before.keys()].filter((p) => !tree.nodes.has(p)) : [];
      this.classTree = tree;
    }
    const checks = { networks: [...this.networks.keys()], v4Leaves: this.v4Leaves, v6: this.v6Checks };
    if (what.macs) {
      const { tree, leafSet } = macScopeTree(checks);
      this.deriveNodeSets(tree, (key) => [leafSet.get(key)!], (prefix) => macScopeNodeSet(prefix), /^pal4imn[-_]/, this.macNodeMemo);
    }
    if (what.classes) {
      for (const family of FAMILIES) {
        for (const c of renderClassDispatch(this.classTree ?? prefixTree([]), family, this.cfg, changedNodes)) this.setChain(c);
        for (const prefix of goneNodes) {
          this.removeChain(family, fromClassNode(prefix));
          this.removeChain(family, toClassNode(prefix));
        }
      }
    }
    if (what.classChains) {
      // A profile came or went: any class's chains may have changed.
      for (const cls of this.classChainKeys.keys()) if (!this.classes.has(cls)) this.renderClass(cls);
      for (const cls of this.classes.keys()) this.renderClass(cls);
    } else if (what.classes) {
      for (const cls of this.classDelta) this.renderClass(cls);
    }
    this.classDelta.clear();
    if (what.macs) {
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

  /** A class's chains as they are now (none when it is gone); its former chains that are no longer wanted go. */
  private renderClass(cls: string): void {
    const c = this.classes.get(cls);
    const keys: string[] = [];
    if (c) {
      for (const family of FAMILIES) {
        for (const ch of this.classChains.chains(cls, c.profileIds, family)) {
          keys.push(chainKey(family, ch.name));
          this.setChain(ch);
        }
      }
    }
    const before = this.classChainKeys.get(cls);
    if (before) this.removeAllBut(new Set(before), new Set(keys));
    if (keys.length) this.classChainKeys.set(cls, keys);
    else this.classChainKeys.delete(cls);
  }

  /** Removes the chains of `before` that are not in `keep`. */
  private removeAllBut(before: ReadonlySet<string>, keep: ReadonlySet<string>): void {
    for (const k of before) {
      if (keep.has(k)) continue;
      const c = this.chains.get(k);
      if (c) this.removeChain(c.family, c.name);
    }
  }

  private classTree: PrefixTree | undefined;

  /**
   * Node sets of a tree (class tree, MAC scope tree) holding the union of the
   * leaf sets below them, and which node sets lie above each leaf set (so
   * member changes reach them). Leaves never share a member (one interface,
   * one endpoint): plain unions.
   */
  private deriveNodeSets(tree: PrefixTree, leafSets: (leaf: string) => string[], nodeSetOf: (prefix: string, leafSet: string) => string, nodeRe: RegExp, memo: Map<string, string>): void {
    // Node set -> the leaf sets below it, in tree order.
    const below = new Map<string, { family: IpVersion; leaves: string[] }>();
    for (const [leaf, path] of tree.paths) {
      for (const ls of leafSets(leaf)) {
        const leafLocal = this.local.get(ls);
        if (!leafLocal) continue;
        const nodes = path.map((prefix) => nodeSetOf(prefix, ls));
        const was = this.above.get(ls);
        if (!nodes.length) this.above.delete(ls);
        else if (!was || was.length !== nodes.length || was.some((n, i) => n !== nodes[i])) this.above.set(ls, nodes);
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
      if (memo.get(n) === sig && this.local.has(n)) continue;
      const members = new Set<string>();
      for (const ls of b.leaves) for (const m of this.local.get(ls)!.members) members.add(m);
      const have = this.local.get(n);
      if (!have || have.members.size !== members.size || [...members].some((m) => !have.members.has(m))) this.createLocal(n, b.family, [...members]);
      memo.set(n, sig);
    }
    for (const n of [...this.local.keys()]) {
      if (nodeRe.test(n) && !below.has(n)) { this.removeLocal(n); memo.delete(n); }
    }
    for (const [ls, nodes] of [...this.above]) if (nodes.some((n) => nodeRe.test(n) && !below.has(n))) this.above.delete(ls);
  }

}
