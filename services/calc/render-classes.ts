// The set-based layout (DESIGN §6.5): what a host's dispatch looks like when
// endpoints are classified by set lookups instead of per-endpoint chains.
// Pure: given the host's classes (ordered profile lists in use) and the
// interfaces that carry a MAC, it renders the entry chains, the class
// chains and trees.
//
// A packet from a workload (per family, `pal-from-wl-dispatch`):
//   (source, interface) of an inactive endpoint   -> DROP (i)
//   (source, interface) in a class's set          -> goto that class's chain,
//        which first calls the MAC check (MAC sets, interface tree): DROP (s)
//        on a mismatch
//   anything else                                 -> DROP (n; the driver
//        reports it as anti-spoofing when the interface has an endpoint)
// and to a workload (`pal-to-wl-dispatch`): (destination, interface) of an
// inactive endpoint -> DROP (i); in a class's set -> goto the class's
// inbound chain; else DROP (n).
//
// Classes are listed flat up to DISPATCH_FANOUT; beyond, they are grouped by
// the next character of their hash into nodes whose sets hold the union of
// their classes' members, so a packet crosses O(log n) rules.
import type { IpVersion } from "../model/index.js";
import type { CalcConfig } from "./calc-config.js";
import type { ChainDef } from "./desired-state.js";
import { prefixTree, type PrefixTree } from "./prefix-tree.js";
import { acceptMarkSpecs, markHex } from "./render-rules.js";
import { DEFAULT_LOG_MARK } from "../contract/flow-report-format.js";
import { clearMask, reportedDrop } from "./render-flow-reports.js";
import {
  ENTRY_CHAINS, MAC_ROOT, MAC_TREE_ROOT, classSet, fromClassChain, fromClassNode, inactiveSet, macListSet, macNode, noMacSet, nodeSet,
  profileInboundChain, profileOutboundChain, toClassChain, toClassNode,
} from "./names.js";

export interface HostClass {
  /** The ordered profile list. */
  profileIds: readonly string[];
}

/**
 * An ordered profile list as jumps (the verdict plumbing of DESIGN §6.4):
 * the first allow (mark) returns, a missing profile or the end drops.
 */
export function profileJumps(profileIds: readonly string[], self: string, chainOf: (id: string) => string, exists: (id: string) => boolean, cfg: CalcConfig): string[] {
  const mark = acceptMarkSpecs(cfg);
  // With flow reports, the log mark is cleared too: one left by an allow
  // point upstream (the sender's outbound rules) must not make a report
  // point here fire (DESIGN §6.12).
  const m = markHex(clearMask(cfg));
  const rules = [`-j MARK --set-xmark 0x0/${m}`];
  for (const [position, id] of profileIds.entries()) {
    if (!exists(id)) {
      // A referenced profile that does not exist denies everything that the
      // profiles before it did not allow.
      rules.push(...reportedDrop(cfg, "", "m", self, position));
      return rules;
    }
    rules.push(`-j ${chainOf(id)}`, `${mark.isSet} -j RETURN`);
  }
  rules.push(...reportedDrop(cfg, "", "d", self));
  return rules;
}

/** Class chains: the profile jumps of the endpoints' shared ordered profile list. */
export function renderClassChains(cls: string, c: HostClass, family: IpVersion, profileExists: (id: string) => boolean, cfg: CalcConfig): ChainDef[] {
  const from = fromClassChain(cls);
  const to = toClassChain(cls);
  return [
    // The MAC check first: reached only by an endpoint's own (address,
    // interface), so whatever it drops is anti-spoofing, and a stranger on an
    // interface without an endpoint is left to the root ("no endpoint").
    { table: "filter", family, name: from, rules: [`-j ${MAC_ROOT}`, ...profileJumps(c.profileIds, from, profileOutboundChain, profileExists, cfg)] },
    { table: "filter", family, name: to, rules: profileJumps(c.profileIds, to, profileInboundChain, profileExists, cfg) },
  ];
}

/** Entry chains and class-tree nodes of one family, for the host's classes (sorted keys). */
export function renderClassDispatch(tree: PrefixTree, family: IpVersion, cfg: CalcConfig): ChainDef[] {
  const out: ChainDef[] = [];
  const dirs = [
    { flag: "src,src", root: ENTRY_CHAINS.fromWorkload, node: fromClassNode, leafChain: fromClassChain },
    { flag: "dst,dst", root: ENTRY_CHAINS.toWorkload, node: toClassNode, leafChain: toClassChain },
  ] as const;
  for (const d of dirs) {
    for (const [prefix, entries] of tree.nodes) {
      const chain = prefix === "" ? d.root : d.node(prefix);
      const rules: string[] = [];
      const match = (set: string) => `-m set --match-set ${set} ${d.flag}`;
      if (prefix === "") {
        // A log mark left by an allow point upstream (the sender's outbound
        // rules) must not make the conditional report points below fire.
        if (cfg.flowLogs) rules.push(`-j MARK --set-xmark 0x0/${markHex(cfg.logMark ?? DEFAULT_LOG_MARK)}`);
        rules.push(...reportedDrop(cfg, match(inactiveSet(family)), "i", chain));
      }
      for (const e of entries) rules.push("leaf" in e ? `${match(classSet(e.leaf, family))} -g ${d.leafChain(e.leaf)}` : `${match(nodeSet(e.child, family))} -g ${d.node(e.child)}`);
      // Not an endpoint's (address, interface). Inside a node only while its
      // sets are being changed: fail closed there too.
      rules.push(...reportedDrop(cfg, "", "n", chain));
      out.push({ table: "filter", family, name: chain, rules });
    }
  }
  return out;
}

/**
 * The MAC check of one family (DESIGN §6.5), called first by every
 * from-workload class chain; it returns unless it drops (s).
 *
 *   pal-from-wl-mac:  (v6) -j pal-from-wl-mact                  the interface tree
 *                     (v4) -m set --match-set pal4i-nomac src,src -j RETURN
 *                     (v4) -m set ! --match-set pal4mac src,src -> DROP
 *
 * IPv4 addresses of active endpoints with a MAC are in `bitmap:ip,mac` sets
 * (one per /16 in use, all listed in the `list:set` pal4mac): the packet's
 * source address must come with the endpoint's MAC. Adding such an
 * endpoint, and even the first one of a new /16, is set members only; the
 * addresses of endpoints without a MAC skip the check (pal4i-nomac). IPv6,
 * which no MAC set can hold, is checked by a prefix tree over interfaces: a
 * leaf drops a frame from its interface with another source MAC; nodes are
 * reached by goto, so falling off any of them returns to pal-from-wl-mac.
 * IPv4 has no interface tree at all (no chain, no jump): its MACs are all in
 * MAC sets.
 */
export function renderMacChains(treeMacs: ReadonlyMap<string, string>, family: IpVersion, cfg: CalcConfig): ChainDef[] {
  const out: ChainDef[] = [];
  if (family === 4) {
    if (treeMacs.size) throw new Error("IPv4 MACs are checked by MAC sets, not by an interface tree");
    const root = [`-m set --match-set ${noMacSet} src,src -j RETURN`, ...reportedDrop(cfg, `-m set ! --match-set ${macListSet} src,src`, "s", MAC_ROOT)];
    out.push({ table: "filter", family, name: MAC_ROOT, rules: root });
    return out;
  }
  out.push({ table: "filter", family, name: MAC_ROOT, rules: [`-j ${MAC_TREE_ROOT}`] });
  const tree = prefixTree([...treeMacs.keys()].sort());
  for (const [prefix, entries] of tree.nodes) {
    const chain = prefix === "" ? MAC_TREE_ROOT : macNode(prefix);
    const rules: string[] = [];
    for (const e of entries) {
      if ("child" in e) rules.push(`-i ${e.child}+ -g ${macNode(e.child)}`);
      else rules.push(...reportedDrop(cfg, `-i ${e.leaf} -m mac ! --mac-source ${treeMacs.get(e.leaf)}`, "s", chain));
    }
    out.push({ table: "filter", family, name: chain, rules });
  }
  return out;
}
