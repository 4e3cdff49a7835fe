// What the kernel holds, as far as Palisade is concerned: our chains (by
// rule hashes), the hook rules in the built-in chains, and our ipsets.
// Parsed from `iptables-save -t filter`, `iptables-save -t raw` and `ipset save`.
import type { Table } from "../../contract/host-update.js";
import { formatAddress, formatCidr, parseCidr, type IpVersion } from "../../model/index.js";
import { OWNED_CHAIN_RE, OWNED_SET_RE } from "../../contract/dataplane-names.js";
import { HASH_COMMENT_RE } from "../plan/rule-hash.js";

/** The filter table's hooks: built-in chain -> our chain it jumps to first. */
export const HOOKS: Record<string, string> = { FORWARD: "pal-FORWARD", INPUT: "pal-INPUT" };
/** The raw table's hook: the conntrack-zone chain (DESIGN §6.13). */
export const RAW_HOOKS: Record<string, string> = { PREROUTING: "pal-PREROUTING" };
/** Every table we write, in the order a restore writes them, with its hooks. */
export const TABLE_HOOKS: Record<Table, Record<string, string>> = { raw: RAW_HOOKS, filter: HOOKS };
export const TABLES = Object.keys(TABLE_HOOKS) as Table[];

export interface KernelChain {
  /** Hash of each rule in order; "" for a rule without our comment (foreign). */
  hashes: string[];
}

export interface KernelFamilyState {
  chains: Map<string, KernelChain>;
  /** Built-in chain -> 1-based positions of rules jumping to our hook chain. */
  hookPositions: Map<string, number[]>;
  /** Built-in chain -> hash comment of its first rule ("" if none / foreign). */
  firstRuleHash: Map<string, string>;
  /** ipset name -> our chains whose rules reference it (--match-set). */
  setRefs: Map<string, Set<string>>;
}

export interface KernelSet {
  family: IpVersion;
  type: string;
  /** A bitmap's range as "<first>-<last>" (rangeText); undefined for other types. */
  range?: string;
  members: Set<string>;
}

/**
 * A bitmap range as `ipset save` prints it, "<first>-<last>", from that or
 * from a CIDR ("10.1.0.0/16", as the planner creates it); undefined when
 * neither.
 */
export function rangeText(r: string): string | undefined {
  const dash = r.indexOf("-");
  if (dash >= 0) {
    const [a, b] = [parseCidr(r.slice(0, dash)), parseCidr(r.slice(dash + 1))];
    return a && b && a.version === 4 && b.version === 4 && a.prefix === 32 && b.prefix === 32 ? `${formatAddress(4, a.addr)}-${formatAddress(4, b.addr)}` : undefined;
  }
  const c = parseCidr(r);
  if (!c || c.version !== 4) return undefined;
  return `${formatAddress(4, c.addr)}-${formatAddress(4, c.addr + (1n << BigInt(32 - c.prefix)) - 1n)}`;
}

export interface KernelState {
  /** The filter table, per family. */
  families: Record<IpVersion, KernelFamilyState>;
  /** The raw table, per family; absent = nothing of ours there. */
  raw?: Record<IpVersion, KernelFamilyState>;
  sets: Map<string, KernelSet>;
}

/** One table of one family as read back (an absent raw table reads as empty). */
export function tableState(k: KernelState, table: Table, family: IpVersion): KernelFamilyState {
  if (table === "filter") return k.families[family];
  return k.raw?.[family] ?? emptyFamilyState();
}

export function emptyFamilyState(): KernelFamilyState {
  return { chains: new Map(), hookPositions: new Map(), firstRuleHash: new Map(), setRefs: new Map() };
}

/** Our part of one table (default filter) in iptables-save output. */
export function parseIptablesSave(text: string, table: Table = "filter"): KernelFamilyState {
  const st = emptyFamilyState();
  const hooks = TABLE_HOOKS[table];
  let inFilter = false;
  const builtinCount = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) { inFilter = line === `*${table}`; continue; }
    if (!inFilter) continue;
    if (line.startsWith(":")) {
      const name = line.slice(1).split(" ")[0]!;
      if (OWNED_CHAIN_RE.test(name)) st.chains.set(name, { hashes: [] });
      continue;
    }
    if (!line.startsWith("-A ")) continue;
    const sp = line.indexOf(" ", 3);
    const chain = line.slice(3, sp < 0 ? undefined : sp);
    const m = HASH_COMMENT_RE.exec(line);
    const ours = st.chains.get(chain);
    if (ours) {
      ours.hashes.push(m ? m[1]! : "");
      for (const ref of line.matchAll(/--match-set (\S+)/g)) {
        let chains = st.setRefs.get(ref[1]!);
        if (!chains) st.setRefs.set(ref[1]!, (chains = new Set()));
        chains.add(chain);
      }
      continue;
    }
    const hook = hooks[chain];
    if (hook) {
      const pos = (builtinCount.get(chain) ?? 0) + 1;
      builtinCount.set(chain, pos);
      if (pos === 1) st.firstRuleHash.set(chain, m ? m[1]! : "");
      if (new RegExp(`(^| )-j ${hook}( |$)`).test(line)) {
        const list = st.hookPositions.get(chain) ?? [];
        list.push(pos);
        st.hookPositions.set(chain, list);
      }
    }
  }
  return st;
}

/**
 * The model's spelling of a member (host routes bare, IPv6 per RFC 5952), so
 * that e.g. ipset's "::ffff:198.18.0.1" equals the model's "::ffff:c612:1".
 */
export function canonicalMember(m: string): string {
  // hash:net,iface members: `<net>,<interface>`, the net in the model's spelling.
  const comma = m.indexOf(",");
  if (comma >= 0) return `${canonicalMember(m.slice(0, comma))}${m.slice(comma)}`;
  const c = parseCidr(m);
  if (!c) return m;
  return c.prefix === (c.version === 4 ? 32 : 128) ? formatAddress(c.version, c.addr) : formatCidr(c);
}

export function parseIpsetSave(text: string): Map<string, KernelSet> {
  const sets = new Map<string, KernelSet>();
  for (const line of text.split("\n")) {
    const parts = line.trim().split(/\s+/);
    if (parts[0] === "create" && parts[1] && OWNED_SET_RE.test(parts[1])) {
      const fi = parts.indexOf("family");
      const family: IpVersion = fi >= 0 && parts[fi + 1] === "inet6" ? 6 : 4;
      const ri = parts.indexOf("range");
      const range = ri >= 0 && parts[ri + 1] ? rangeText(parts[ri + 1]!) : undefined;
      sets.set(parts[1], { family, type: parts[2] ?? "", ...(range !== undefined ? { range } : {}), members: new Set() });
    } else if (parts[0] === "add" && parts[1]) {
      sets.get(parts[1])?.members.add(canonicalMember(parts[2]!));
    }
  }
  return sets;
}
