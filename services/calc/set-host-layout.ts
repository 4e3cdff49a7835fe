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
import { ENTRY_CHAINS, classKey, classSet, inactiveSet, macListSet, macSet, noMacSet, nodeSet } from "./names.js";
import { prefixTree, type PrefixTree } from "./prefix-tree.js";
import { renderClassDispatch, renderMacChains } from "./render-classes.js";

const FAMILIES: readonly IpVersion[] = [4, 6];
const NO_MACS: ReadonlyMap<string, string> = new Map();

/** What an interface contributes, derived from its endpoint when that changes. */
interface Placement {
  cls?: string;
  profileIds?: readonly string[];
  /** The MAC the IPv6 interface tree checks (no MAC set type holds IPv6 addresses). */
  ipv6Mac?: string;
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
  const mac = ep.mac?.toUpperCase();
  if (active) {
    for (const net of ep.ipv4Nets) {
      const a = hostAddress(net);
      members.push(mac !== undefined ? [macSet(a), 4, `${a},${mac}`] : [noMacSet, 4, `${a},${name}`]);
    }
  }
  const ipv6Mac = mac !== undefined && ep.ipv6Nets.length ? mac : undefined;
  return active ? { cls, profileIds: ep.profileIds, ipv6Mac, members } : { ipv6Mac, members };
}

/** MAC set members are claims (an address may be claimed by several endpoints); the rest are the interface's own. */
const isMacClaim = (m: [string, IpVersion, string]) => m[0].startsWith("pal4m-");

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
  /** IPv6 interface tree: interface -> MAC. */
  private readonly ipv6Macs = new Map<string, string>();
  /**
   * IPv4 address -> MAC -> how many active endpoints here claim it. A MAC
   * set holds one MAC per address: it gets one only when exactly one MAC is
   * claimed (two endpoints disagreeing get none: fail closed).
   */
  private readonly macClaims = new Map<string, Map<string, number>>();
  /** MAC set (per /16) -> claims in it: the set lives while it has any. */
  private readonly macSetClaims = new Map<string, number>();
  /** The class tree the current node sets follow. */
  private tree: PrefixTree | undefined;
  /** Left to render at flush: classes came or went / a profile came or went / an IPv6 MAC changed. */
  private readonly stale = { classes: false, classChains: false, macs: false };

  /** Creates the host's sets and chains of a host without endpoints, emitting them. */
  constructor(private readonly out: HostOutput, private readonly cfg: CalcConfig, private readonly classChains: ClassChainCache) {
    for (const family of FAMILIES) this.createLocal(inactiveSet(family), family, []);
    this.createLocal(noMacSet, 4, []);
    this.createLocal(macListSet, 4, []);
    const toHost = cfg.workloadToHost === "accept" ? [`-j ${ENTRY_CHAINS.fromWorkload}`, "-j ACCEPT"] : reportedDrop(cfg, "", "h", ENTRY_CHAINS.workloadToHost);
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
   * Moves an interface's set members, class reference and MAC to what its
   * endpoint says now: set deltas only, unless a class appears or goes or
   * an IPv6 MAC changes (then chains are re-rendered at flush).
   */
  private place(name: string): void {
    const before = this.placed.get(name);
    const after = this.endpointOn(name);
    if (before === after) return;
    const prev = before && placement(before, name);
    const next = after && placement(after, name);
    if (next?.cls && next.cls !== prev?.cls) this.classRef(next.cls, next.profileIds!, +1);
    const key = (m: [string, IpVersion, string]) => `${m[0]}\t${m[2]}`;
    const nextKeys = new Set(next?.members.map(key));
    const prevKeys = new Set(prev?.members.map(key));
    for (const m of prev?.members ?? []) {
      if (nextKeys.has(key(m))) continue;
      if (isMacClaim(m)) this.macClaim(m[0], m[2], -1);
      else this.localChange(m[0], m[1], m[2], false, prev!.cls);
    }
    for (const m of next?.members ?? []) {
      if (prevKeys.has(key(m))) continue;
      if (isMacClaim(m)) this.macClaim(m[0], m[2], +1);
      else this.localChange(m[0], m[1], m[2], true, next!.cls);
    }
    if (prev?.cls && prev.cls !== next?.cls) this.classRef(prev.cls, prev.profileIds!, -1);
    if (prev?.ipv6Mac !== next?.ipv6Mac) {
      if (next?.ipv6Mac !== undefined) this.ipv6Macs.set(name, next.ipv6Mac);
      else this.ipv6Macs.delete(name);
      this.stale.macs = true;
      this.out.touch();
    }
    if (after) this.placed.set(name, after);
    else this.placed.delete(name);
  }

  /**
   * One endpoint's claim `<address>,<MAC>` on a MAC set, in or out. The set
   * (and its entry in the list set) lives while it has claims; the address
   * is in it with a MAC only while exactly one MAC is claimed for it.
   */
  private macClaim(set: string, claim: string, sign: 1 | -1): void {
    const comma = claim.indexOf(",");
    const [ip, mac] = [claim.slice(0, comma), claim.slice(comma + 1)];
    if (sign > 0) {
      const n = this.macSetClaims.get(set) ?? 0;
      if (n === 0) {
        this.createLocal(set, 4, []);
        this.localChange(macListSet, 4, set, true, undefined);
      }
      this.macSetClaims.set(set, n + 1);
    }
    const claims = this.macClaims.get(ip) ?? new Map<string, number>();
    const only = () => (claims.size === 1 ? [...claims.keys()][0] : undefined);
    const before = only();
    const count = (claims.get(mac) ?? 0) + sign;
    if (count > 0) claims.set(mac, count);
    else claims.delete(mac);
    if (claims.size) this.macClaims.set(ip, claims);
    else this.macClaims.delete(ip);
    const after = only();
    if (before !== after) {
      if (before !== undefined) this.localChange(set, 4, `${ip},${before}`, false, undefined);
      if (after !== undefined) this.localChange(set, 4, `${ip},${after}`, true, undefined);
    }
    if (sign < 0) {
      const n = (this.macSetClaims.get(set) ?? 1) - 1;
      if (n > 0) this.macSetClaims.set(set, n);
      else {
        this.macSetClaims.delete(set);
        this.localChange(macListSet, 4, set, false, undefined);
        this.removeLocal(set);
      }
    }
  }

  private classRef(cls: string, profileIds: readonly string[], sign: 1 | -1): void {
    const c = this.classes.get(cls);
    if (sign > 0) {
      if (c) { c.count++; return; }
      this.classes.set(cls, { profileIds, count: 1 });
      this.classChains.acquire(cls);
      for (const f of FAMILIES) this.createLocal(classSet(cls, f), f, []);
      this.stale.classes = true;
      this.out.touch();
      return;
    }
    if (!c || --c.count > 0) return;
    this.classes.delete(cls);
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

  /** One member in or out of a local set, and of the tree-node sets above its class. */
  private localChange(name: string, family: IpVersion, member: string, add: boolean, cls: string | undefined): void {
    const names = [name];
    if (cls !== undefined && name === classSet(cls, family)) {
      for (const prefix of this.tree?.paths.get(cls) ?? []) names.push(nodeSet(prefix, family));
    }
    for (const n of names) {
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
    if (old && sameRules(old.rules, c.rules)) return;
    this.chains.set(key, c);
    this.out.emit({ type: "chain-update", chain: c });
  }

  private removeChain(family: IpVersion, name: string): void {
    if (this.chains.delete(chainKey(family, name))) this.out.emit({ type: "chain-remove", table: "filter", family, name });
  }

  /**
   * Re-renders what is stale: with `classes`, the class tree, its node sets,
   * the roots and the class chains; with `classChains`, the class chains (a
   * profile came or went); with `macs`, the MAC chains. Removes the chains
   * of those kinds that are no longer wanted.
   */
  private render(what: { classes: boolean; classChains: boolean; macs: boolean }): void {
    if (what.classes) this.deriveClassTree();
    const wanted = new Set<string>();
    for (const family of FAMILIES) {
      const out: ChainDef[] = [];
      if (what.classes) out.push(...renderClassDispatch(this.tree ?? prefixTree([]), family, this.cfg));
      if (what.classes || what.classChains) {
        for (const [cls, c] of this.classes) out.push(...this.classChains.chains(cls, c.profileIds, family));
      }
      if (what.macs) out.push(...renderMacChains(family === 6 ? this.ipv6Macs : NO_MACS, family, this.cfg));
      for (const c of out) {
        wanted.add(chainKey(family, c.name));
        this.setChain(c);
      }
    }
    const stale = (name: string) =>
      (what.classes && /^pal-(cf_|ct_|cfn-|ctn-)/.test(name)) || (what.macs && /^pal-fm[-_]/.test(name));
    for (const [key, c] of this.chains) {
      if (!wanted.has(key) && stale(c.name)) this.removeChain(c.family, c.name);
    }
  }

  /** The class tree for the host's classes now, and node sets holding the union of their classes' members. */
  private deriveClassTree(): void {
    const tree = prefixTree([...this.classes.keys()].sort());
    // Classes never share a member (one interface, one class): plain unions.
    const want = new Map<string, { family: IpVersion; members: Set<string> }>();
    for (const [cls, path] of tree.paths) {
      for (const f of FAMILIES) {
        for (const prefix of path) {
          const n = nodeSet(prefix, f);
          let w = want.get(n);
          if (!w) want.set(n, (w = { family: f, members: new Set() }));
          for (const m of this.local.get(classSet(cls, f))?.members ?? []) w.members.add(m);
        }
      }
    }
    for (const [n, w] of want) {
      const have = this.local.get(n);
      if (have && have.members.size === w.members.size && [...w.members].every((m) => have.members.has(m))) continue;
      this.createLocal(n, w.family, [...w.members]);
    }
    for (const n of [...this.local.keys()]) {
      if (/^pal[46]in-/.test(n) && !want.has(n)) this.removeLocal(n);
    }
    this.tree = tree;
  }
}
