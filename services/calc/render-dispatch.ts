// The set-based layout (DESIGN §6.5): what a host's dispatch looks like when
// endpoints are set members instead of per-endpoint chains, and an
// endpoint's ordered profile list is one member per position. Pure: given
// the host's positions (which profiles sit at each, and whether one there
// is missing) and the interfaces that carry a MAC, it renders the entry
// chains, the workload chains, the position trees and the MAC chains.
//
// A packet from a workload (per family, `pal-from-wl-dispatch`):
//   (source, interface) of an inactive endpoint   -> DROP (i)
//   (source, interface) of an active endpoint     -> goto pal-cf, which calls
//        the MAC check (MAC sets, interface tree): DROP (s) on a mismatch,
//        then for each position k: `-j pal-cf<k>`, and RETURN once a
//        profile allowed (the accept mark); at the end DROP (d)
//   anything else                                 -> DROP (n; the driver
//        reports it as anti-spoofing when the interface has an endpoint)
// pal-cf<k> finds the endpoint's profile at position k by a set lookup,
// `(source, interface)` in `pal4ip<k>_<profile key>`, and goes to that
// profile's outbound chain (which marks on allow, drops on deny, returns
// to pal-cf on no match); an endpoint whose profile at k does not exist is
// in `pal4ix<k>`: DROP (m). A packet that finds no line at k ends there:
// DROP (d). Either its list is shorter (every profile before k returned
// without a verdict: default deny) or its members are between sets within
// an apply (the sets move in the apply's ipset stage, the lines in its
// iptables stage): falling through to position k+1 would judge it by the
// wrong profiles for that instant, so it fails closed. The same to a
// workload (`dst,dst`, inbound chains).
//
// Each position's profiles are listed flat up to DISPATCH_FANOUT; beyond,
// they are grouped by the next character of their key into nodes whose
// sets hold the union of their profiles' members, so a packet crosses
// O(log n) rules per position. A host's chains and rules grow with the
// profiles in use and the longest list, never with how they are combined.
import type { IpVersion } from "../model/index.js";
import type { MacCheck, MacEntry } from "../contract/host-update.js";
import type { CalcConfig } from "./calc-config.js";
import type { ChainDef } from "./desired-state.js";
import { prefixTree, type PrefixTree } from "./prefix-tree.js";
import { acceptMarkSpecs, markHex } from "./render-rules.js";
import { DEFAULT_LOG_MARK } from "../contract/flow-report-format.js";
import { REPLY_CHECK_MARK } from "../contract/dataplane-names.js";
import { clearMask, reportedDrop } from "./render-flow-reports.js";
import {
  ENTRY_CHAINS, MAC_ROOT, MAC_TREE_ROOT, WORKLOAD_CHAINS, activeSet, endpointMacChain, endpointMacSet, inactiveSet, macListSet,
  macNode, macScopeNode, macScopeNodeSet, mirroredInboundChain, mirroredOutboundChain, missingSet, networkHash, networkMacChain, networkMacListSet,
  networkScopeSet, noMacSet, positionChain, positionNodeSet, positionSet, profileInboundChain, profileOutboundChain, type WorkloadVariant,
} from "./names.js";

const VARIANTS: readonly WorkloadVariant[] = ["from", "to", "replyFrom", "replyTo"];

/** How each workload chain looks endpoints up, and whose chain a profile at a position is. */
const VARIANT = {
  from: { flag: "src,src", profileChain: profileOutboundChain, reports: true },
  to: { flag: "dst,dst", profileChain: profileInboundChain, reports: true },
  // The mirrored chains (DESIGN §6.14) report nothing: a re-check is no new flow.
  replyFrom: { flag: "src,src", profileChain: mirroredInboundChain, reports: false },
  replyTo: { flag: "dst,dst", profileChain: mirroredOutboundChain, reports: false },
} as const;

const cfgOf = (v: WorkloadVariant, cfg: CalcConfig): CalcConfig => (VARIANT[v].reports ? cfg : { ...cfg, flowLogs: false });

/**
 * The entry chains of one family: inactive first, then any active endpoint's
 * (address, interface) goes to the workload chain, anything else drops
 * (no endpoint). Static: an endpoint is a set member here, never a rule.
 */
export function renderEntryChains(family: IpVersion, cfg: CalcConfig): ChainDef[] {
  const dirs = [
    { flag: "src,src", root: ENTRY_CHAINS.fromWorkload, next: WORKLOAD_CHAINS.from },
    { flag: "dst,dst", root: ENTRY_CHAINS.toWorkload, next: WORKLOAD_CHAINS.to },
  ] as const;
  return dirs.map((d) => {
    const rules: string[] = [];
    // A log mark left by an allow point upstream (the sender's outbound
    // rules) must not make the conditional report points below fire.
    if (cfg.flowLogs) rules.push(`-j MARK --set-xmark 0x0/${markHex(cfg.logMark ?? DEFAULT_LOG_MARK)}`);
    rules.push(...reportedDrop(cfg, `-m set --match-set ${inactiveSet(family)} ${d.flag}`, "i", d.root));
    rules.push(`-m set --match-set ${activeSet(family)} ${d.flag} -g ${d.next}`);
    // Not an endpoint's (address, interface): fail closed.
    rules.push(...reportedDrop(cfg, "", "n", d.root));
    return { table: "filter" as const, family, name: d.root, rules };
  });
}

/**
 * The workload chains of one family, for positions 0..positions-1 (the
 * verdict plumbing of DESIGN §6.4): clear the marks, each position in
 * turn, RETURN on the first allow, DROP (d) at the end. `pal-cf` first
 * diverts a re-check (REPLY_CHECK_MARK, DESIGN §6.14) to `pal-rf`, then
 * calls the MAC check: reached only by an endpoint's own (address,
 * interface), whatever it drops is anti-spoofing. The mirrored chains check
 * no MAC (the connection's own first packet passed it).
 */
export function renderWorkloadChains(positions: number, family: IpVersion, cfg: CalcConfig): ChainDef[] {
  const reply = `-m mark --mark ${markHex(REPLY_CHECK_MARK)}/${markHex(REPLY_CHECK_MARK)}`;
  return VARIANTS.map((v) => {
    const vcfg = cfgOf(v, cfg);
    const name = WORKLOAD_CHAINS[v];
    const rules: string[] = [];
    if (v === "from") rules.push(`${reply} -g ${WORKLOAD_CHAINS.replyFrom}`, `-j ${MAC_ROOT}`);
    if (v === "to") rules.push(`${reply} -g ${WORKLOAD_CHAINS.replyTo}`);
    // With flow reports, the log mark is cleared too: one left by an allow
    // point upstream (the sender's outbound rules) must not make a report
    // point here fire (DESIGN §6.12).
    rules.push(`-j MARK --set-xmark 0x0/${markHex(clearMask(vcfg))}`);
    const mark = acceptMarkSpecs(vcfg);
    for (let k = 0; k < positions; k++) rules.push(`-j ${positionChain(v, k)}`, `${mark.isSet} -j RETURN`);
    rules.push(...reportedDrop(vcfg, "", "d", name));
    return { table: "filter" as const, family, name, rules };
  });
}

/** One position of a host: its tree of profile keys, what each key is, whether some endpoint's profile there is missing. */
export interface PositionDispatch {
  k: number;
  tree: PrefixTree;
  /** Profile key -> profile id (existing profiles only). */
  profileOf: ReadonlyMap<string, string>;
  missing: boolean;
}

/**
 * Position k's chains of one family, for the four variants: the root
 * (`pal-cf<k>`…) and the tree's nodes; with `only`, just the nodes with
 * those prefixes ("" is the root). A root or node that finds no line drops:
 * no profile at k is default deny (only a profile's own chain returns to
 * the workload chain, for the next position), and a member between sets
 * within an apply must not reach the next position's profiles.
 */
export function renderPositionDispatch(p: PositionDispatch, family: IpVersion, cfg: CalcConfig, only?: ReadonlySet<string>): ChainDef[] {
  const out: ChainDef[] = [];
  for (const v of VARIANTS) {
    const { flag, profileChain } = VARIANT[v];
    const vcfg = cfgOf(v, cfg);
    const match = (set: string) => `-m set --match-set ${set} ${flag}`;
    for (const [prefix, entries] of p.tree.nodes) {
      if (only && !only.has(prefix)) continue;
      const chain = positionChain(v, p.k, prefix);
      const rules: string[] = [];
      // A referenced profile that does not exist denies everything that the
      // profiles before it did not allow.
      if (prefix === "" && p.missing) rules.push(...reportedDrop(vcfg, match(missingSet(p.k, family)), "m", chain, p.k));
      for (const e of entries) {
        rules.push("leaf" in e
          ? `${match(positionSet(p.k, e.leaf, family))} -g ${profileChain(p.profileOf.get(e.leaf)!)}`
          : `${match(positionNodeSet(p.k, e.child, family))} -g ${positionChain(v, p.k, e.child)}`);
      }
      rules.push(...reportedDrop(vcfg, "", prefix === "" ? "d" : "n", chain));
      out.push({ table: "filter", family, name: chain, rules });
    }
  }
  return out;
}

/** Names of position k's chains for a tree prefix, all variants (for removal). */
export function positionChainNames(k: number, prefix: string): string[] {
  return VARIANTS.map((v) => positionChain(v, k, prefix));
}

export type { MacCheck, MacEntry };

/** What the MAC check of a host covers beyond the MAC sets of the default network. */
export interface MacChecks {
  /** IPv4: networks (ids) with a MAC scope on the host, each checked by its own MAC sets. */
  networks: readonly string[];
  /** IPv4: endpoints (by interface) whose MACs no MAC set can hold, checked by rules. */
  v4Leaves: ReadonlyMap<string, readonly MacEntry[]>;
  /** IPv6: the interface tree. */
  v6: ReadonlyMap<string, MacCheck>;
}

/** The IPv4 MAC scope tree's key of a network and of an endpoint leaf: one tree over both. */
export const networkScopeKey = (network: string) => `w${networkHash(network)}`;
export const endpointScopeKey = (iface: string) => `e${iface}`;

/** An endpoint's rules: RETURN on a (source, MAC) it may use (any entry: Neutron's OR), else DROP (s). */
function entryRules(entries: readonly MacEntry[], chain: string, cfg: CalcConfig): string[] {
  const rules = entries.map((e) => `-s ${e.net} ${e.mac !== undefined ? `-m mac --mac-source ${e.mac} ` : ""}-j RETURN`);
  return [...rules, ...reportedDrop(cfg, "", "s", chain)];
}

/**
 * The MAC check of one family (DESIGN §6.5), called first by every
 * from-workload class chain; it returns unless it drops (s).
 *
 *   pal-from-wl-mac (v4):  -m set --match-set pal4i-nomac src,src -j RETURN
 *                          …the MAC scope tree: networks and endpoint leaves…
 *                          -m set ! --match-set pal4mac src,src -> DROP
 *   pal-from-wl-mac (v6):  -j pal-from-wl-mact                  the interface tree
 *
 * IPv4 addresses of active endpoints with a MAC are in `bitmap:ip,mac` sets
 * (one per /16 in use and network, listed in the network's `list:set`): the
 * packet's source address must come with the endpoint's MAC. The default
 * network's are checked by the last line; another network's by its chain
 * (`pal-fmw_<hash>`), reached by a lookup of (source, interface) in the
 * network's scope set — one host may hold one address on two networks with
 * two MACs. Endpoints whose MACs no bitmap can hold (a CIDR pair with a MAC,
 * an address allowed with two MACs) have a leaf chain of (source, MAC) rules
 * (`pal-fme-<iface>`), reached the same way. Networks and leaves are one
 * prefix tree whose nodes are found by union sets, so a new flow crosses
 * O(log n) rules; nodes are reached by goto, leaves return to the class
 * chain, a node falling off drops (its sets are being changed: fail closed).
 * Adding an endpoint, even the first of a new /16, is set members only; the
 * first endpoint of a network on the host adds a tree line.
 *
 * IPv6, which no MAC set can hold, is checked by a prefix tree over
 * interfaces: a leaf drops a frame from its interface with another source
 * MAC, or goes to the endpoint's leaf chain when its sources have different
 * MACs; nodes are reached by goto, so falling off any of them returns to
 * pal-from-wl-mac.
 */
export function renderMacChains(checks: MacChecks, family: IpVersion, cfg: CalcConfig): ChainDef[] {
  const out: ChainDef[] = [];
  if (family === 4) {
    const leaves = new Map<string, { set: string; chain: string; rules: string[] }>();
    for (const n of checks.networks) {
      const chain = networkMacChain(n);
      leaves.set(networkScopeKey(n), { set: networkScopeSet(n), chain, rules: reportedDrop(cfg, `-m set ! --match-set ${networkMacListSet(n)} src,src`, "s", chain) });
    }
    for (const [iface, entries] of checks.v4Leaves) {
      const chain = endpointMacChain(iface);
      leaves.set(endpointScopeKey(iface), { set: endpointMacSet(iface), chain, rules: entryRules(entries, chain, cfg) });
    }
    const tree = prefixTree([...leaves.keys()].sort());
    const match = (set: string) => `-m set --match-set ${set} src,src`;
    for (const [prefix, entries] of tree.nodes) {
      const chain = prefix === "" ? MAC_ROOT : macScopeNode(prefix);
      const rules: string[] = prefix === "" ? [`${match(noMacSet)} -j RETURN`] : [];
      for (const e of entries) {
        if ("child" in e) rules.push(`${match(macScopeNodeSet(e.child))} -g ${macScopeNode(e.child)}`);
        else rules.push(`${match(leaves.get(e.leaf)!.set)} -g ${leaves.get(e.leaf)!.chain}`);
      }
      if (prefix === "") rules.push(...reportedDrop(cfg, `-m set ! --match-set ${macListSet} src,src`, "s", MAC_ROOT));
      else rules.push(...reportedDrop(cfg, "", "s", chain));
      out.push({ table: "filter", family, name: chain, rules });
    }
    for (const l of leaves.values()) out.push({ table: "filter", family, name: l.chain, rules: l.rules });
    return out;
  }
  out.push({ table: "filter", family, name: MAC_ROOT, rules: [`-j ${MAC_TREE_ROOT}`] });
  const tree = prefixTree([...checks.v6.keys()].sort());
  for (const [prefix, entries] of tree.nodes) {
    const chain = prefix === "" ? MAC_TREE_ROOT : macNode(prefix);
    const rules: string[] = [];
    for (const e of entries) {
      if ("child" in e) {
        rules.push(`-i ${e.child}+ -g ${macNode(e.child)}`);
        continue;
      }
      const check = checks.v6.get(e.leaf)!;
      if ("mac" in check) rules.push(...reportedDrop(cfg, `-i ${e.leaf} -m mac ! --mac-source ${check.mac}`, "s", chain));
      else {
        rules.push(`-i ${e.leaf} -g ${endpointMacChain(e.leaf)}`);
        out.push({ table: "filter", family, name: endpointMacChain(e.leaf), rules: entryRules(check.entries, endpointMacChain(e.leaf), cfg) });
      }
    }
    out.push({ table: "filter", family, name: chain, rules });
  }
  return out;
}

/**
 * The IPv4 MAC scope tree (networks and endpoint leaves), as
 * renderMacChains walks it: for the layout's union sets of its nodes.
 */
export function macScopeTree(checks: Pick<MacChecks, "networks" | "v4Leaves">): { tree: PrefixTree; leafSet: Map<string, string> } {
  const leafSet = new Map<string, string>();
  for (const n of checks.networks) leafSet.set(networkScopeKey(n), networkScopeSet(n));
  for (const iface of checks.v4Leaves.keys()) leafSet.set(endpointScopeKey(iface), endpointMacSet(iface));
  return { tree: prefixTree([...leafSet.keys()].sort()), leafSet };
}
