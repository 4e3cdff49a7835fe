// The driver's chains for bridged workload ports (DESIGN §6.3): what a
// bridge port may send and receive before (and whatever) the controller's
// classification says. Pure; rendered from this host's topology (which taps
// are bridge ports) and the IPv6 MAC checks of their endpoints, never from
// addresses, so an endpoint's addresses change only ipset members (the
// per-port sets, bridge-twins.ts); its MACs, which Neutron rarely changes,
// rewrite its leaf.
//
//   pal-br-from   from a bridge port: joining the network (DHCP, DHCPv6,
//                 neighbour/router discovery from link-local or ::) is
//                 accepted, a VM answering as a DHCP server or router is
//                 dropped; then the port guard; then ND from the port's own
//                 addresses is accepted.
//   pal-br-to     to a bridge port: DHCP replies, DHCPv6, RA/NS/NA/MLD are
//                 accepted; then the port guard.
//   pal-bgf, pal-bgf-<prefix>   the guard from a port: a prefix tree over the
//                 bridged taps' names; a leaf RETURNs when the source is one of
//                 the port's addresses (set pal4b-<tap>/pal6b-<tap>) and, for
//                 IPv6, comes with a MAC its endpoint may use; anything else
//                 ends in the node's DROP (an unknown port, a tap without an
//                 endpoint — its set is empty — a foreign source or MAC).
//   pal-bgt, pal-bgt-<prefix>   the same to a port, by destination.
import type { ChainDef, MacCheck } from "../../contract/host-update.js";
import { ADMIT_CHAIN } from "../../contract/dataplane-names.js";
import { DEFAULT_LOG_MARK, FLOW_LOG_CHAINS, FLOW_NFLOG_GROUP, FLOW_NFLOG_SIZE, logPrefix } from "../../contract/flow-report-format.js";
import type { IpVersion } from "../../model/index.js";
import { prefixTree } from "../../util/prefix-tree.js";

export const BRIDGE_CHAINS = { from: "pal-br-from", to: "pal-br-to", guardFrom: "pal-bgf", guardTo: "pal-bgt" } as const;

/** The set of a bridged port's addresses in one family (hash:net by its name, DESIGN §6.2). */
export function portSetName(family: IpVersion, tap: string): string {
  return `pal${family}b-${tap}`;
}
export const PORT_SET_RE = /^pal[46]b-/;

/** ICMPv6 a host needs to join a link: RS, NS, NA, MLD (130–132, 143). */
const ND_FROM_PORT = [133, 135, 136, 130, 131, 132, 143];
/** ... and what a port receives from the link's router and neighbours: RA, NS, NA, MLD. */
const ND_TO_PORT = [134, 135, 136, 130, 131, 132, 143];

/**
 * A DROP preceded by its flow report point (DESIGN §6.12), in the words of
 * the controller's roots: the driver's `pal-log` takes a token, NFLOG
 * reports when it got one. Same line shapes as calc/render-flow-reports.ts.
 */
function reportedDrop(spec: string, code: "s" | "n", chain: string): string[] {
  const m = `0x${DEFAULT_LOG_MARK.toString(16)}`;
  const p = spec ? `${spec} ` : "";
  return [
    `${p}-j ${FLOW_LOG_CHAINS.deny}`,
    `-m mark --mark ${m}/${m} -j NFLOG --nflog-group ${FLOW_NFLOG_GROUP} --nflog-size ${FLOW_NFLOG_SIZE} --nflog-threshold 1 --nflog-prefix ${logPrefix(code, chain)}`,
    `${p}-j DROP`,
  ];
}

/**
 * An allowance accepts through the driver's admit chain, which marks the
 * connection judged in the current policy epoch (DESIGN §6.14).
 */
const ADMIT = `-g ${ADMIT_CHAIN}`;

function icmp6(t: number): string {
  return `-p icmpv6 -m icmp6 --icmpv6-type ${t}`;
}

function allowanceChains(family: IpVersion): ChainDef[] {
  const from: string[] = [];
  const to: string[] = [];
  if (family === 4) {
    // DHCP client (also from 0.0.0.0, before it has an address), to whatever
    // answers on the link; a VM answering as a DHCP server is dropped.
    from.push(`-p udp -m udp --sport 68 --dport 67 ${ADMIT}`);
    from.push(...reportedDrop("-p udp -m udp --sport 67 --dport 68", "s", BRIDGE_CHAINS.from));
    from.push(`-j ${BRIDGE_CHAINS.guardFrom}`);
    to.push(`-p udp -m udp --sport 67 --dport 68 ${ADMIT}`);
  } else {
    // Link-local and unspecified sources are no endpoint's address (the
    // guard would drop them), but ND, MLD and DAD need them.
    for (const src of ["fe80::/10", "::/128"]) for (const t of ND_FROM_PORT) from.push(`-s ${src} ${icmp6(t)} ${ADMIT}`);
    from.push(`-p udp -m udp --sport 546 --dport 547 ${ADMIT}`);
    from.push(...reportedDrop(icmp6(134), "s", BRIDGE_CHAINS.from));
    from.push(...reportedDrop("-p udp -m udp --sport 547", "s", BRIDGE_CHAINS.from));
    from.push(`-j ${BRIDGE_CHAINS.guardFrom}`);
    // After the guard: ND from the port's own (global) addresses. A VM
    // answers a neighbour solicitation from the solicited address, whatever
    // its outbound rules say.
    for (const t of ND_FROM_PORT) from.push(`${icmp6(t)} ${ADMIT}`);
    to.push(`-p udp -m udp --sport 547 --dport 546 ${ADMIT}`);
    for (const t of ND_TO_PORT) to.push(`${icmp6(t)} ${ADMIT}`);
  }
  to.push(`-j ${BRIDGE_CHAINS.guardTo}`);
  return [
    { table: "filter", family, name: BRIDGE_CHAINS.from, rules: from },
    { table: "filter", family, name: BRIDGE_CHAINS.to, rules: to },
  ];
}

/**
 * A from-port leaf: RETURN when the source is one of the port's addresses
 * and, for IPv6, comes with a MAC the endpoint may use (the controller's
 * interface tree, which checks that for routed taps, never matches a
 * bridged frame; IPv4 MACs are checked by the controller's MAC sets, which
 * do). Entries: one line per (source, MAC), any of them admits.
 */
function fromLeaf(port: string, set: string, mac6: MacCheck | undefined): string[] {
  const own = `${port} -m set --match-set ${set} src`;
  if (!mac6) return [`${own} -j RETURN`];
  if ("mac" in mac6) return [`${own} -m mac --mac-source ${mac6.mac} -j RETURN`];
  return mac6.entries.map((e) => `${own} -s ${e.net}${e.mac !== undefined ? ` -m mac --mac-source ${e.mac}` : ""} -j RETURN`);
}

/** One guard tree (from or to ports) over the sorted bridged taps. */
function guardTree(family: IpVersion, taps: readonly string[], dir: "from" | "to", mac6: ReadonlyMap<string, MacCheck>): ChainDef[] {
  const root = dir === "from" ? BRIDGE_CHAINS.guardFrom : BRIDGE_CHAINS.guardTo;
  const port = (name: string) => (dir === "from" ? `-m physdev --physdev-in ${name}` : `-m physdev --physdev-out ${name} --physdev-is-bridged`);
  const which = dir === "from" ? "src" : "dst";
  const chainOf = (prefix: string) => (prefix === "" ? root : `${root}-${prefix}`);
  const tree = prefixTree(taps);
  const out: ChainDef[] = [];
  for (const [prefix, entries] of tree.nodes) {
    const chain = chainOf(prefix);
    const rules = entries.flatMap((e) => ("child" in e
      ? [`${port(`${e.child}+`)} -g ${chainOf(e.child)}`]
      : dir === "from" && family === 6
        ? fromLeaf(port(e.leaf), portSetName(family, e.leaf), mac6.get(e.leaf))
        : [`${port(e.leaf)} -m set --match-set ${portSetName(family, e.leaf)} ${which} -j RETURN`]));
    // Not one of the port's addresses, a tap without an endpoint (empty
    // set), or a port this driver has not seen yet: dropped. The flow
    // reader turns "no-endpoint" into "anti-spoofing" for a port that has
    // an endpoint, as for the roots (DESIGN §6.5).
    rules.push(...reportedDrop("", "n", chain));
    out.push({ table: "filter", family, name: chain, rules });
  }
  return out;
}

/**
 * Every chain of the bridged-port plumbing for one family; `taps` are the
 * bridged workload taps, `mac6` the IPv6 MAC check of the endpoint on a tap
 * (none: any MAC, or no endpoint — then the port's set is empty anyway).
 */
export function renderBridgeChains(family: IpVersion, taps: readonly string[], mac6: ReadonlyMap<string, MacCheck> = new Map()): ChainDef[] {
  const sorted = [...taps].sort();
  return [...allowanceChains(family), ...guardTree(family, sorted, "from", mac6), ...guardTree(family, sorted, "to", mac6)];
}
