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
import type { MacCheck, MacEntry } from "../contract/host-update.js";
import type { CalcConfig } from "./calc-config.js";
import type { ChainDef } from "./desired-state.js";
import { prefixTree, type PrefixTree } from "./prefix-tree.js";
import { acceptMarkSpecs, markHex } from "./render-rules.js";
import { DEFAULT_LOG_MARK } from "../contract/flow-report-format.js";
import { REPLY_CHECK_MARK } from "../contract/dataplane-names.js";
import { clearMask, reportedDrop } from "./render-flow-reports.js";
import {
  ENTRY_CHAINS, MAC_ROOT, MAC_TREE_ROOT, classSet, endpointMacChain, endpointMacSet, fromClassChain, fromClassNode, inactiveSet, macListSet,
  macNode, macScopeNode, macScopeNodeSet, mirroredInboundChain, mirroredOutboundChain, networkHash, networkMacChain, networkMacListSet,
  networkScopeSet, noMacSet, nodeSet, profileInboundChain, profileOutboundChain, replyFromClassChain, replyToClassChain, toClassChain, toClassNode,
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

/**
 * Class chains: the profile jumps of the endpoints' shared ordered profile
 * list, and their mirrored twins (DESIGN §6.5, "Reply-direction re-check
 * chains"). A packet carrying REPLY_CHECK_MARK is a reply-direction packet
 * of an established connection being judged again (DESIGN §6.14): it goes
 * first to the mirrored chain, which runs the same profile list over the
 * profiles' mirrored chains — from the workload (a reply leaving the
 * original receiver), its inbound rules; to it (a reply reaching the
 * original sender), its outbound rules. The mirrored chains check no MAC
 * (the re-check judges policy; the connection's own first packet passed the
 * MAC check) and report nothing (a re-check is no new flow).
 */
export function renderClassChains(cls: string, c: HostClass, family: IpVersion, profileExists: (id: string) => boolean, cfg: CalcConfig): ChainDef[] {
  const from = fromClassChain(cls);
  const to = toClassChain(cls);
  const replyFrom = replyFromClassChain(cls);
  const replyTo = replyToClassChain(cls);
  const reply = `-m mark --mark ${markHex(REPLY_CHECK_MARK)}/${markHex(REPLY_CHECK_MARK)}`;
  const noReports: CalcConfig = { ...cfg, flowLogs: false };
  return [
    // The MAC check first (after the re-check divert): reached only by an
    // endpoint's own (address, interface), so whatever it drops is
    // anti-spoofing, and a stranger on an interface without an endpoint is
    // left to the root ("no endpoint").
    { table: "filter", family, name: from, rules: [`${reply} -g ${replyFrom}`, `-j ${MAC_ROOT}`, ...profileJumps(c.profileIds, from, profileOutboundChain, profileExists, cfg)] },
    { table: "filter", family, name: to, rules: [`${reply} -g ${replyTo}`, ...profileJumps(c.profileIds, to, profileInboundChain, profileExists, cfg)] },
    { table: "filter", family, name: replyFrom, rules: profileJumps(c.profileIds, replyFrom, mirroredInboundChain, profileExists, noReports) },
    { table: "filter", family, name: replyTo, rules: profileJumps(c.profileIds, replyTo, mirroredOutboundChain, profileExists, noReports) },
  ];
}

/**
 * Entry chains and class-tree nodes of one family, for the host's classes
 * (sorted keys); with `only`, just the nodes with those prefixes ("" is the
 * entry chains).
 */
export function renderClassDispatch(tree: PrefixTree, family: IpVersion, cfg: CalcConfig, only?: ReadonlySet<string>): ChainDef[] {
  const out: ChainDef[] = [];
  const dirs = [
    { flag: "src,src", root: ENTRY_CHAINS.fromWorkload, node: fromClassNode, leafChain: fromClassChain },
    { flag: "dst,dst", root: ENTRY_CHAINS.toWorkload, node: toClassNode, leafChain: toClassChain },
  ] as const;
  for (const d of dirs) {
    for (const [prefix, entries] of tree.nodes) {
      if (only && !only.has(prefix)) continue;
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
