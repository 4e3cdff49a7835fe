// The controller's desired state for this host, as the driver holds it:
// built from a snapshot, then patched by deltas. Every incoming name and
// member is checked here, before it can reach an iptables-restore or ipset
// line (defence in depth: the controller validated it already).
import { chainKey, type ChainDef, type HostUpdate, type MacCheck } from "../../contract/host-update.js";
import { LIMITS } from "../../model/limits.js";
import { MAC_SET_RE, OWNED_CHAIN_RE, OWNED_SET_RE, macSetRange, setTypeOf } from "../../contract/dataplane-names.js";
import { parseCidr, type IpVersion } from "../../model/index.js";
import { ProtocolError } from "../../contract/errors.js";

export interface DesiredSet {
  family: IpVersion;
  members: Set<string>;
}

/**
 * What changed in a DesiredState since the last `takeChanges()`: the driver
 * plans an apply from this alone (DESIGN §6.7), so it must name every key
 * that may differ. Keys, never values: the planner compares the desired
 * value with what it last programmed, so a change that was undone before
 * the apply (a member added, then removed) writes nothing.
 */
export interface DesiredChanges {
  /** chainKey()s of chains updated or removed. */
  readonly chains: ReadonlySet<string>;
  /**
   * Set name -> the members added or removed since, or "all" when the set
   * was replaced or removed wholesale (ipset-update, ipset-remove): then its
   * members are compared in full, which costs what the update itself did.
   */
  readonly sets: ReadonlyMap<string, ReadonlySet<string> | "all">;
  /**
   * Endpoint keys updated or removed: an interface whose endpoint left or
   * was replaced hands none of its connections on (DESIGN §6.14).
   */
  readonly endpoints?: ReadonlySet<string>;
}

const UNSAFE = /[\u0000-\u001f\u007f]/;

export class DesiredState {
  readonly chains = new Map<string, ChainDef>();
  readonly sets = new Map<string, DesiredSet>();
  /** Endpoint key -> interface name. */
  readonly endpoints = new Map<string, string>();
  /** Endpoint key -> its IPv6 MAC check, when it has one (checked on bridged ports, DESIGN §6.3). */
  readonly endpointMacs6 = new Map<string, MacCheck>();
  /**
   * Changes since the last takeChanges(); undefined until the first one:
   * a state built from a snapshot has no baseline to be a change against
   * (and recording a whole snapshot's keys would only cost memory).
   */
  private changes: { chains: Set<string>; sets: Map<string, Set<string> | "all">; endpoints: Set<string> } | undefined;

  /**
   * Hands over (and forgets) what changed since the previous call; undefined
   * on the first call, meaning "everything: plan against the kernel".
   */
  takeChanges(): DesiredChanges | undefined {
    const c = this.changes;
    this.changes = { chains: new Set(), sets: new Map(), endpoints: new Set() };
    return c;
  }

  private touchSet(name: string, members: readonly string[] | "all"): void {
    const c = this.changes;
    if (!c) return;
    const prev = c.sets.get(name);
    if (prev === "all") return;
    if (members === "all") { c.sets.set(name, "all"); return; }
    const touched = prev ?? new Set<string>();
    for (const m of members) touched.add(m);
    c.sets.set(name, touched);
  }

  /** Applies updates; throws (changing nothing further) on anything unsafe. */
  apply(updates: readonly HostUpdate[]): void {
    for (const u of updates) {
      switch (u.type) {
        case "ipset-update":
          checkSet(u.name, u.family, u.members);
          this.sets.set(u.name, { family: u.family, members: new Set(u.members) });
          this.touchSet(u.name, "all");
          break;
        case "ipset-delta": {
          checkSet(u.name, u.family, [...u.added, ...u.removed]);
          let s = this.sets.get(u.name);
          if (!s) this.sets.set(u.name, (s = { family: u.family, members: new Set() }));
          this.touchSet(u.name, u.removed);
          this.touchSet(u.name, u.added);
          for (const m of u.removed) s.members.delete(m);
          for (const m of u.added) s.members.add(m);
          break;
        }
        case "ipset-remove":
          this.sets.delete(u.name);
          this.touchSet(u.name, "all");
          break;
        case "chain-update":
          checkChain(u.chain);
          this.chains.set(chainKey(u.chain.family, u.chain.name), u.chain);
          this.changes?.chains.add(chainKey(u.chain.family, u.chain.name));
          break;
        case "chain-remove":
          this.chains.delete(chainKey(u.family, u.name));
          this.changes?.chains.add(chainKey(u.family, u.name));
          break;
        case "endpoint-update":
          if (UNSAFE.test(u.key) || !/^[A-Za-z0-9_-]{1,15}$/.test(u.interfaceName)) throw new ProtocolError(`unsafe endpoint ${JSON.stringify(u.key)}`);
          if (u.mac6) checkMacCheck(u.key, u.mac6);
          this.endpoints.set(u.key, u.interfaceName);
          if (u.mac6) this.endpointMacs6.set(u.key, u.mac6);
          else this.endpointMacs6.delete(u.key);
          this.changes?.endpoints.add(u.key);
          break;
        case "endpoint-remove":
          this.endpoints.delete(u.key);
          this.endpointMacs6.delete(u.key);
          this.changes?.endpoints.add(u.key);
          break;
      }
    }
  }
}

const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

const MAC_MEMBER_RE = /^([0-9A-F]{2}:){5}[0-9A-F]{2}$/;

/** An endpoint's fixed addresses and pairs, at most (LIMITS.netsPerEndpoint each). */
const MAX_MAC_ENTRIES = 2 * LIMITS.netsPerEndpoint;

/** An IPv6 MAC check goes into rules (`-s`, `--mac-source`): upper-case MACs, IPv6 nets, bounded. */
function checkMacCheck(key: string, m: MacCheck): void {
  const bad = (what: string) => new ProtocolError(`endpoint ${JSON.stringify(key)}: refusing IPv6 MAC check (${what})`);
  if ("mac" in m) {
    if (!MAC_MEMBER_RE.test(m.mac)) throw bad(`MAC ${JSON.stringify(m.mac)}`);
    return;
  }
  if (m.entries.length === 0 || m.entries.length > MAX_MAC_ENTRIES) throw bad(`${m.entries.length} entries, 1 to ${MAX_MAC_ENTRIES} allowed`);
  for (const e of m.entries) {
    const c = /^[0-9a-fA-F:./]{2,43}$/.test(e.net) ? parseCidr(e.net) : undefined;
    if (c?.version !== 6) throw bad(`source ${JSON.stringify(e.net)}`);
    if (e.mac !== undefined && !MAC_MEMBER_RE.test(e.mac)) throw bad(`MAC ${JSON.stringify(e.mac)}`);
  }
}

function checkSet(name: string, family: IpVersion, members: readonly string[]): void {
  if (!OWNED_SET_RE.test(name)) throw new ProtocolError(`refusing ipset name ${JSON.stringify(name)}`);
  const range = macSetRange(name);
  if (setTypeOf(name) === "list:set") {
    for (const m of members) if (family !== 4 || !MAC_SET_RE.test(m) || macSetRange(m) === undefined) throw new ProtocolError(`refusing member ${JSON.stringify(m)} of ipset ${name}`);
    return;
  }
  if (setTypeOf(name) === "bitmap:ip,mac") {
    // `<address>,<MAC>`: an IPv4 address inside the set's /16, an upper-case MAC.
    const block = range !== undefined ? parseCidr(range) : undefined;
    for (const m of members) {
      const [ip, mac, ...rest] = m.split(",");
      const c = ip !== undefined ? parseCidr(ip) : undefined;
      const ok = family === 4 && block !== undefined && c !== undefined && c.version === 4 && c.prefix === 32 && rest.length === 0
        && mac !== undefined && MAC_MEMBER_RE.test(mac) && c.addr >> 16n === block.addr >> 16n;
      if (!ok) throw new ProtocolError(`refusing member ${JSON.stringify(m)} of ipset ${name}`);
    }
    return;
  }
  const withIface = setTypeOf(name) === "hash:net,iface";
  for (const m of members) {
    // hash:net,iface: `<net>,<interface>`, where /0 means "any address on this interface".
    const comma = withIface ? m.indexOf(",") : -1;
    const net = withIface ? m.slice(0, comma) : m;
    const c = comma === -1 && withIface ? undefined : parseCidr(net);
    const ok = c !== undefined && c.version === family && (withIface ? IFACE_RE.test(m.slice(comma + 1)) : c.prefix !== 0);
    if (!ok) throw new ProtocolError(`refusing member ${JSON.stringify(m)} of ipset ${name}`);
  }
}

function checkChain(c: ChainDef): void {
  if (!OWNED_CHAIN_RE.test(c.name)) throw new ProtocolError(`refusing chain name ${JSON.stringify(c.name)}`);
  for (const r of c.rules) {
    if (UNSAFE.test(r) || r.length > 4096) throw new ProtocolError(`refusing rule in ${c.name}: control characters or too long`);
  }
}
